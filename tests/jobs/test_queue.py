"""The pipeline queue on both backends: concurrent claims, leases, heartbeat, takeover of expired claims."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from appliance.jobs import Database, Heartbeat, Intake, JobState, JobStore, LeaseLost, PipelineQueue

from .test_store import new_job


def _ready(store: JobStore, count: int) -> list[str]:
    intake = Intake(store.db)
    ids = [f"J{n:03d}" for n in range(count)]
    for job_id in ids:
        new_job(intake, job_id, study=f"1.2.{job_id[1:]}")
        intake.mark_ready(job_id, 1)
    return ids


def test_concurrent_claims_take_each_job_once(store: JobStore, connect: Callable[[], Database]) -> None:
    """Eight workers, each with its own connection as separate processes have, race for 40 jobs."""
    ids = _ready(store, 40)
    claimed: dict[str, list[str]] = {}
    lock = threading.Lock()

    def work(n: int) -> None:
        queue = PipelineQueue(connect(), f"w{n}", 30)
        while (job := queue.claim()) is not None:
            with lock:
                claimed.setdefault(job.id, []).append(queue.owner)
            queue.hand_over(job)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == ids
    assert all(len(owners) == 1 for owners in claimed.values()), claimed
    assert {j.state for j in store.list_jobs()} == {JobState.DONE}


def test_an_expired_lease_is_resumed_by_another_worker(store: JobStore, connect: Callable[[], Database]) -> None:
    (job_id,) = _ready(store, 1)
    dead = PipelineQueue(connect(), "dead", 0.3)
    alive = PipelineQueue(connect(), "alive", 30)
    job = dead.claim()
    assert job is not None
    record = dead.start_stage(job, "reader", time.time())
    assert alive.recover(resume=True, max_resumes=1) == []  # still leased
    time.sleep(0.5)
    (resumed,) = alive.recover(resume=True, max_resumes=1)
    assert (resumed.state, resumed.resumes, resumed.lease_owner) == (JobState.READY, 1, None)
    assert [s.status for s in store.stages(job_id)] == ["interrupted"]
    assert record
    with pytest.raises(LeaseLost):  # the stalled worker comes back: it may write nothing more
        dead.hand_over(job)
    taken = alive.claim()
    assert taken is not None and taken.lease_owner == "alive"
    with pytest.raises(LeaseLost):
        dead.fail(job, "late")
    time.sleep(0.1)
    assert alive.renew({job_id}) == {job_id}


def test_max_resumes_then_failed_with_the_reason(store: JobStore) -> None:
    _ready(store, 1)
    queue = PipelineQueue(store.db, "w", 0.05)
    for resumes in (0, 1):
        assert queue.claim() is not None
        time.sleep(0.1)
        (job,) = queue.recover(resume=True, max_resumes=2)
        assert job.state is JobState.READY and job.resumes == resumes + 1
    assert queue.claim() is not None
    time.sleep(0.1)
    (job,) = queue.recover(resume=True, max_resumes=2)
    assert job.state is JobState.FAILED and job.failed_phase == "pipeline"
    assert job.error == ("interrupted between stages by a worker crash or restart; not resumed: "
                         "resumed 2 time(s) already (worker.max-resumes)")


def test_recover_all_ignores_leases(store: JobStore) -> None:
    """SQLite's one worker, holding the lock, takes over every running job at its start."""
    _ready(store, 1)
    queue = PipelineQueue(store.db, "w", 30)
    assert queue.claim() is not None
    (job,) = queue.recover(resume=False, max_resumes=2, expired_only=False)
    assert job.state is JobState.FAILED and job.error is not None and job.error.endswith("worker.interrupted is 'fail'")


def test_the_heartbeat_keeps_a_claim_and_reports_a_lost_one(store: JobStore,
                                                            connect: Callable[[], Database]) -> None:
    (job_id,) = _ready(store, 1)
    queue = PipelineQueue(connect(), "w", 0.6)
    rival = PipelineQueue(connect(), "rival", 30)
    lost = threading.Event()
    heartbeat: Heartbeat[str] = Heartbeat(queue.renew, 0.2)
    job = queue.claim()
    assert job is not None
    heartbeat.hold(job_id, lost.set)
    heartbeat.start()
    try:
        time.sleep(1.5)  # more than twice the lease: only renewals keep it
        assert rival.recover(resume=True, max_resumes=2) == []
        assert not lost.is_set()
        with store.db.transaction() as tx:  # as if this worker had stalled past its lease
            tx.execute("UPDATE jobs SET lease_owner = 'rival' WHERE id = ?", (job_id,))
        assert lost.wait(2)
    finally:
        heartbeat.stop()
    with pytest.raises(LeaseLost):
        queue.hand_over(job)
