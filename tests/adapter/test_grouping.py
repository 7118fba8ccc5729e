"""Two adapters' groupers on one job store and one spool: a study is one job, closed by exactly one,
and a killed adapter's group is closed by the other."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.adapter.grouping import INSTANCE_SUFFIX, Grouper
from appliance.jobs import Intake, JobState, JobStore
from appliance.storage import PayloadLayout

QUIET = 0.3


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[JobStore, JobStore]]:
    first, second = JobStore(tmp_path / "jobs.sqlite3"), JobStore(tmp_path / "jobs.sqlite3")
    yield first, second
    first.close()
    second.close()


def _grouper(store: JobStore, tmp_path: Path, owner: str) -> Grouper:
    return Grouper(Intake(store.db, owner=owner), PayloadLayout(tmp_path / "payloads"), lambda _title: None,
                   quiet_seconds=QUIET)


def _store(grouper: Grouper, study: str, sop: str) -> str:
    slot = grouper.reserve("OrganSeg", "SENDER", study)
    try:
        assert slot.claim(sop)
        (slot.input_dir / (sop + INSTANCE_SUFFIX)).write_bytes(b"x")
        slot.stored(sop)
    finally:
        grouper.release(slot)
    return slot.job_id


def _settle(*groupers: Grouper, seconds: float = 3 * QUIET) -> list[str]:
    ready: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for grouper in groupers:
            ready.extend(j.id for j in grouper.tick())
        time.sleep(0.02)
    return ready


def test_a_study_over_two_adapters_is_one_job_closed_once(stores: tuple[JobStore, JobStore], tmp_path: Path) -> None:
    a, b = _grouper(stores[0], tmp_path, "a:104"), _grouper(stores[1], tmp_path, "b:104")
    job = _store(a, "1.2.3", "1.1")
    assert _store(b, "1.2.3", "1.2") == job
    # b keeps storing past a's own quiet window: a must not close the group under it.
    for n in range(3, 9):
        time.sleep(QUIET / 2)
        a.tick()
        assert _store(b, "1.2.3", f"1.{n}") == job
    assert _settle(a, b) == [job]
    ready = stores[0].get(job)
    assert ready.state is JobState.READY and ready.instance_count == 8
    assert _store(b, "1.2.3", "1.1") != job  # later: a new job (version 2)


def test_a_duplicate_stored_by_the_other_adapter_is_not_replaced(stores: tuple[JobStore, JobStore],
                                                                 tmp_path: Path) -> None:
    a, b = _grouper(stores[0], tmp_path, "a:104"), _grouper(stores[1], tmp_path, "b:104")
    _store(a, "1.2.3", "1.1")
    slot = b.reserve("OrganSeg", "SENDER", "1.2.3")
    assert not slot.claim("1.1")
    b.release(slot)


def test_a_killed_adapters_group_is_closed_by_the_other(stores: tuple[JobStore, JobStore], tmp_path: Path) -> None:
    a, b = _grouper(stores[0], tmp_path, "a:104"), _grouper(stores[1], tmp_path, "b:104")
    job = _store(a, "1.2.3", "1.1")
    a.tick()  # then a is killed: it never ticks again
    (tmp_path / "payloads" / job / "input" / ".half-written.tmp").write_bytes(b"x")
    assert _settle(b) == [job]
    assert stores[1].get(job).instance_count == 1
    # a restarted adapter finds nothing to resume and stores the study's next instance in a new job
    restarted = _grouper(stores[0], tmp_path, "a:104")
    assert restarted.recover() == 0
    assert _store(restarted, "1.2.3", "1.2") != job
