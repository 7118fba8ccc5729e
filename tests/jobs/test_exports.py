"""The export queue on both backends: a task per destination, not-before backoff, leases, job completion."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from appliance.jobs import (
    Database,
    ExportQueue,
    ExportRecord,
    ExportTask,
    Intake,
    JobState,
    JobStore,
    LeaseLost,
    PipelineQueue,
)

from .test_store import new_job


def _exporting(store: JobStore, job_id: str = "J1", destinations: tuple[str, ...] = ("A", "B")) -> None:
    intake = Intake(store.db)
    new_job(intake, job_id, study=f"1.2.{job_id[1:]}", destinations=destinations)
    intake.mark_ready(job_id, 1)
    queue = PipelineQueue(store.db, "w", 30)
    job = queue.claim()
    assert job is not None
    queue.hand_over(job)


def _record(task: ExportTask, outcome: str, detail: str = "") -> ExportRecord:
    return ExportRecord(task.job_id, task.destination, task.tries, outcome, len(task.delivered), 0, detail,
                        time.time())


def test_each_destination_is_its_own_task(store: JobStore) -> None:
    _exporting(store)
    queue = ExportQueue(store.db, "e1", 30)
    a, b = queue.claim("A", 5), queue.claim("B", 5)
    assert a is not None and b is not None and queue.claim("A", 5) is None
    assert (a.state, a.tries, a.lease_owner) == ("sending", 1, "e1")
    a = queue.delivered(a, ["seg.dcm"])
    assert a.delivered == ("seg.dcm",)
    assert queue.finish(a, "sent", _record(a, "sent")).state is JobState.EXPORTING  # B still open
    assert queue.finish(b, "sent", _record(b, "sent")).state is JobState.DONE
    assert [(e.destination, e.outcome) for e in store.exports("J1")] == [("A", "sent"), ("B", "sent")]


def test_backoff_is_a_not_before_time(store: JobStore) -> None:
    _exporting(store, destinations=("A",))
    queue = ExportQueue(store.db, "e1", 30)
    task = queue.claim("A", 5)
    assert task is not None
    queue.retry_later(task, 0.5, _record(task, "transient", "refused; next try in 0.5 s"))
    assert queue.claim("A", 5) is None  # not due yet: the sender goes on with other work
    time.sleep(0.6)
    again = queue.claim("A", 5)
    assert again is not None and again.tries == 2


def test_a_failed_destination_fails_the_job_and_retry_sends_only_there(store: JobStore) -> None:
    _exporting(store)
    queue = ExportQueue(store.db, "e1", 30)
    a, b = queue.claim("A", 5), queue.claim("B", 5)
    assert a is not None and b is not None
    queue.finish(a, "sent", _record(a, "sent"))
    b = queue.delivered(b, ["one.dcm"])
    failed = queue.finish(b, "failed", _record(b, "failed", "refused"))
    assert failed.state is JobState.FAILED and failed.failed_phase == "export"
    assert failed.error == "export failed to B"
    retried = store.retry("J1")
    assert retried.state is JobState.EXPORTING and retried.attempt == 2
    tasks = {t.destination: t for t in store.export_tasks("J1")}
    assert tasks["A"].state == "sent" and tasks["B"].state == "pending"
    assert tasks["B"].delivered == ("one.dcm",) and tasks["B"].tries == 0 and tasks["B"].attempt == 2
    assert queue.claim("A", 5) is None


def test_a_dead_exporters_task_is_taken_over_and_counts_as_a_try(store: JobStore,
                                                                 connect: Callable[[], Database]) -> None:
    _exporting(store, destinations=("A",))
    dead, alive = ExportQueue(connect(), "dead", 0.3), ExportQueue(connect(), "alive", 30)
    task = dead.claim("A", 2)
    assert task is not None
    assert alive.claim("A", 2) is None  # leased
    time.sleep(0.5)
    taken = alive.claim("A", 2)
    assert taken is not None and taken.lease_owner == "alive" and taken.tries == 2
    assert [e.outcome for e in store.exports("J1")] == ["interrupted"]
    with pytest.raises(LeaseLost):
        dead.delivered(task, ["seg.dcm"])
    with pytest.raises(LeaseLost):
        dead.finish(task, "sent", _record(task, "sent"))
    # The second holder dies on the last try too: the task fails instead of looping forever.
    with store.db.transaction() as tx:
        tx.execute("UPDATE export_tasks SET lease_expires = 0")
    assert alive.claim("A", 2) is None
    assert store.get("J1").state is JobState.FAILED
    assert [e.outcome for e in store.exports("J1")] == ["interrupted", "interrupted", "failed"]


def test_unknown_destinations_fail_instead_of_waiting(store: JobStore) -> None:
    _exporting(store, destinations=("A", "GONE"))
    queue = ExportQueue(store.db, "e1", 30)
    (gone,) = queue.fail_unknown(["A"])
    assert gone.destination == "GONE"
    task = queue.claim("A", 5)
    assert task is not None
    job = queue.finish(task, "sent", _record(task, "sent"))
    assert job.state is JobState.FAILED and job.error == "export failed to GONE"


def test_concurrent_exporters_finish_a_job_exactly_once(store: JobStore, connect: Callable[[], Database]) -> None:
    """Two exporters finishing a job's last two tasks at once: one of them completes the job."""
    import threading

    for n in range(20):
        _exporting(store, f"J{n:02d}", ("A", "B"))
    barrier = threading.Barrier(2)

    def work(destination: str) -> None:
        queue = ExportQueue(connect(), destination.lower(), 30)
        barrier.wait()
        while (task := queue.claim(destination, 5)) is not None:
            queue.finish(task, "sent", _record(task, "sent"))

    threads = [threading.Thread(target=work, args=(d,)) for d in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {j.state for j in store.list_jobs()} == {JobState.DONE}
