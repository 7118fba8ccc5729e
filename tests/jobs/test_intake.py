"""Open study groups in the job store, shared by adapters: one job per study, closed exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from appliance.jobs import Database, Intake, JobState, JobStore


def join(intake: Intake, job_id: str, study: str = "1.2") -> tuple[str, bool]:
    job, created = intake.join(job_id, called_ae="OrganSeg", calling_ae="X", study_uid=study, workflow="organ-seg")
    return job.id, created


def test_adapters_join_one_group_per_study(store: JobStore, connect: Callable[[], Database]) -> None:
    first, second = Intake(store.db, owner="a:104"), Intake(connect(), owner="b:104")
    assert join(first, "J1") == ("J1", True)
    assert join(second, "J2") == ("J1", False)  # the other adapter's group
    assert join(second, "J3", study="1.3") == ("J3", True)
    assert [j.id for j in store.list_jobs()] == ["J1", "J3"]


def test_concurrent_first_instances_make_one_job(store: JobStore, connect: Callable[[], Database]) -> None:
    intakes = [Intake(connect(), owner=f"a{n}:104") for n in range(4)]
    results: list[tuple[str, bool]] = []
    threads = [threading.Thread(target=lambda n=n: results.append(join(intakes[n], f"J{n}"))) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len({job_id for job_id, _ in results}) == 1 and sum(created for _, created in results) == 1
    assert len(store.list_jobs()) == 1


def test_a_group_closes_once_when_quiet_across_adapters(store: JobStore, connect: Callable[[], Database]) -> None:
    first, second = Intake(store.db), Intake(connect())
    join(first, "J1")
    assert first.close("J1", 60, 3) is None  # not quiet for a minute
    assert [j.id for j in second.quiet_groups(0.0)] == ["J1"]
    time.sleep(0.2)
    assert second.touch("J1", 2)  # the other adapter stored two: the window starts again
    assert first.quiet_groups(0.15) == []
    assert first.close("J1", 0.15, 3) is None
    time.sleep(0.2)
    assert [j.id for j in first.quiet_groups(0.15)] == ["J1"]
    ready = second.close("J1", 0.15, 3)
    assert ready is not None and ready.state is JobState.READY and ready.instance_count == 3
    assert first.close("J1", 0.0, 3) is None  # exactly one adapter closes it
    assert not first.touch("J1", 1)  # a late adapter learns it is closed
    assert join(first, "J2") == ("J2", True)  # the study's next instance opens a new group
    assert store.get("J2").version == 2


def test_an_empty_group_is_deleted_when_it_closes(store: JobStore) -> None:
    intake = Intake(store.db)
    join(intake, "J1")
    assert intake.close("J1", 0.0, 0) is not None
    assert store.list_jobs() == []


def test_completion_closes_a_group_of_another_adapter(store: JobStore, connect: Callable[[], Database]) -> None:
    first, second = Intake(store.db), Intake(connect())
    join(first, "J1", study="1.9")
    assert [j.id for j in second.open_groups_of("1.9")] == ["J1"]
    assert second.close("J1", 0.0, 1) is not None
    assert second.open_groups_of("1.9") == []
