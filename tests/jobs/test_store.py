"""The job store on both backends: life cycle, transitions, records, operators' retry, atomic writes."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from appliance.jobs import (
    Database,
    Intake,
    InvalidTransition,
    JobState,
    JobStore,
    PipelineQueue,
    StageRecord,
    StoreError,
)


def new_job(intake: Intake, job_id: str, study: str = "1.2", destinations: tuple[str, ...] = ()) -> None:
    intake.create(job_id, called_ae="OrganSeg", calling_ae="X", study_uid=study, workflow="organ-seg",
                  destinations=destinations)


def test_claim_transitions_and_retry(store: JobStore) -> None:
    intake, queue = Intake(store.db), PipelineQueue(store.db, "w1", 30)
    for n in (1, 2):
        new_job(intake, f"J{n}", destinations=("MYPACS",))
    assert [j.version for j in store.list_jobs()] == [1, 2]
    assert queue.claim() is None  # nothing ready yet
    intake.mark_ready("J2", 3)
    intake.mark_ready("J1", 5)
    first, second = queue.claim(), queue.claim()
    assert first is not None and second is not None and queue.claim() is None
    assert (first.id, first.state, first.instance_count, first.lease_owner) == ("J2", JobState.RUNNING, 3, "w1")
    assert first.lease_expires is not None and first.lease_expires > time.time()
    with pytest.raises(InvalidTransition):
        store.set_state("J1", JobState.RECEIVING)
    record = queue.start_stage(second, "segment", started_at=time.time())
    queue.finish_stage(record, StageRecord("segment", "failed", "ModelError: no model", ended_at=time.time(),
                                           duration_s=0.5))
    failed = queue.fail(second, "model error")
    assert failed.finished_at is not None and failed.failed_phase == "pipeline" and failed.lease_owner is None
    assert store.retry("J1").state is JobState.READY
    exporting = queue.hand_over(first)
    assert exporting.state is JobState.EXPORTING
    assert [(t.destination, t.state) for t in store.export_tasks("J2")] == [("MYPACS", "pending")]
    (stage,) = store.stages("J1")
    assert (stage.job_id, stage.stage, stage.status, stage.detail, stage.attempt) == (
        "J1", "segment", "failed", "ModelError: no model", 1)
    with pytest.raises(InvalidTransition):
        store.retry("J2")


def test_a_job_without_destinations_is_done_at_hand_over(store: JobStore) -> None:
    intake, queue = Intake(store.db), PipelineQueue(store.db, "w1", 30)
    new_job(intake, "J1")
    intake.mark_ready("J1", 1)
    job = queue.claim()
    assert job is not None
    done = queue.hand_over(job)
    assert done.state is JobState.DONE and done.finished_at is not None and store.export_tasks("J1") == []


def test_records_keep_their_order(store: JobStore) -> None:
    new_job(Intake(store.db), "J1", destinations=("A",))
    for n in range(5):
        with store.db.transaction() as tx:
            tx.execute("INSERT INTO exports (job_id, destination, attempt, outcome, sent, failed, detail, at)"
                       " VALUES (?, 'A', ?, 'transient', 0, 1, '', ?)", ("J1", n + 1, 100.0 - n))
    assert [e.attempt for e in store.exports("J1")] == [1, 2, 3, 4, 5]


def _failed_job(store: JobStore, job_id: str) -> None:
    intake, queue = Intake(store.db), PipelineQueue(store.db, "w1", 30)
    new_job(intake, job_id)
    intake.mark_ready(job_id, 1)
    job = queue.claim()
    assert job is not None
    queue.fail(job, "model error")


def _commit_fails(db: Database) -> None:
    """A deferred constraint on jobs: checked at COMMIT, so the COMMIT itself fails, as on a full disk."""
    with db.transaction() as tx:
        if tx.dialect == "sqlite":
            tx.execute("CREATE TABLE nowhere (id TEXT PRIMARY KEY)")
            tx.execute("CREATE TABLE deferred_check (job_id TEXT REFERENCES nowhere(id) DEFERRABLE INITIALLY DEFERRED)")
            tx.execute("CREATE TRIGGER audit_jobs AFTER INSERT ON jobs"
                       " BEGIN INSERT INTO deferred_check VALUES (NEW.id); END")
        else:
            tx.execute("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
                       " LANGUAGE plpgsql")
            tx.execute("CREATE CONSTRAINT TRIGGER audit_jobs AFTER INSERT ON jobs DEFERRABLE INITIALLY DEFERRED"
                       " FOR EACH ROW EXECUTE FUNCTION refuse()")


def _drop_trigger(db: Database, name: str) -> None:
    with db.transaction() as tx:
        tx.execute(f"DROP TRIGGER {name}" + (" ON jobs" if tx.dialect == "postgresql" else ""))


def test_a_failed_commit_is_rolled_back(store: JobStore, connect: Callable[[], Database]) -> None:
    other = connect()
    _commit_fails(other)
    with pytest.raises(StoreError):
        new_job(Intake(store.db), "J1")
    _drop_trigger(other, "audit_jobs")  # the write lock was released ...
    assert store.list_jobs() == []  # ... and nothing of the failed transaction is left
    new_job(Intake(store.db), "J2")
    assert [j.id for j in store.list_jobs()] == ["J2"]


def test_retry_is_one_transaction(store: JobStore, connect: Callable[[], Database]) -> None:
    _failed_job(store, "J1")
    other = connect()
    # The move back to 'ready' fails, as a write on a full disk would.
    with other.transaction() as tx:
        if tx.dialect == "sqlite":
            tx.execute("CREATE TRIGGER no_ready BEFORE UPDATE OF state ON jobs WHEN NEW.state = 'ready'"
                       " BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        else:
            tx.execute("CREATE FUNCTION no_ready() RETURNS trigger AS $$ BEGIN IF NEW.state = 'ready' THEN"
                       " RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
            tx.execute("CREATE TRIGGER no_ready BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION no_ready()")
    with pytest.raises(StoreError, match="disk full"):
        store.retry("J1")
    job = store.get("J1")  # all of the retry or nothing: still the failed first attempt
    assert (job.state, job.attempt, job.error, job.failed_phase) == (JobState.FAILED, 1, "model error", "pipeline")
    _drop_trigger(other, "no_ready")
    retried = store.retry("J1")
    assert (retried.state, retried.attempt, retried.error) == (JobState.READY, 2, None)


def test_completion_requests_are_taken_once(store: JobStore) -> None:
    intake = Intake(store.db)
    new_job(intake, "J1", study="1.2.3")
    assert store.request_completion("1.2.3") == 1
    assert store.request_completion("1.2.3") == 1  # asking twice keeps one request
    assert intake.take_completion_requests() == ["1.2.3"]
    assert intake.take_completion_requests() == []


def test_an_adapter_resumes_only_its_own_receiving_jobs(store: JobStore) -> None:
    """Two adapters share the store: the one that restarts must not adopt the other's open groups."""
    first, second = Intake(store.db, owner="host:104"), Intake(store.db, owner="host:11104")
    new_job(first, "J1", study="1.1")
    new_job(second, "J2", study="1.2")
    assert [j.id for j in Intake(store.db, owner="host:104").receiving()] == ["J1"]
    assert [j.id for j in second.receiving()] == ["J2"]
