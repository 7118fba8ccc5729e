"""The job store API the pipeline worker uses: claiming, transitions, records."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from appliance.jobs import ExportRecord, InvalidTransition, JobState, JobStore, StageRecord


def test_claim_transitions_and_retry(tmp_path: Path) -> None:
    with JobStore(tmp_path / "jobs.sqlite3") as store:
        for n in (1, 2):
            store.create(f"J{n}", called_ae="OrganSeg", calling_ae="X", study_uid="1.2",
                         workflow="organ-seg", destinations=["MYPACS"])
        assert [j.version for j in store.list_jobs()] == [1, 2]
        assert store.claim_next_ready() is None  # nothing ready yet
        store.mark_ready("J2", 3)
        store.mark_ready("J1", 5)
        first, second = store.claim_next_ready(), store.claim_next_ready()
        assert first is not None and second is not None and store.claim_next_ready() is None
        assert (first.id, first.state, first.instance_count) == ("J2", JobState.RUNNING, 3)
        with pytest.raises(InvalidTransition):
            store.set_state("J1", JobState.DONE.__class__("sending"))
        record = store.start_stage("J1", "segment", 1, started_at=time.time())
        store.finish_stage(record, StageRecord("segment", "failed", "ModelError: no model", ended_at=time.time(),
                                               duration_s=0.5))
        failed = store.set_state("J1", JobState.FAILED, error="model error", phase="pipeline")
        assert failed.finished_at is not None and failed.failed_phase == "pipeline"
        assert store.retry("J1").state is JobState.READY
        store.set_state("J2", JobState.EXPORTING)
        assert store.claim_next_export() is not None
        store.record_export(ExportRecord("J2", "MYPACS", 1, "sent", 3, 0, "", time.time()))
        assert store.set_state("J2", JobState.DONE).state is JobState.DONE
        assert [e.outcome for e in store.exports("J2")] == ["sent"]
        (stage,) = store.stages("J1")
        assert (stage.job_id, stage.stage, stage.status, stage.detail, stage.attempt) == (
            "J1", "segment", "failed", "ModelError: no model", 1)
        with pytest.raises(InvalidTransition):
            store.retry("J2")


def _failed_job(store: JobStore, job_id: str) -> None:
    store.create(job_id, called_ae="OrganSeg", calling_ae="X", study_uid="1.2", workflow="OrganSeg")
    store.mark_ready(job_id, 1)
    store.claim_next_ready()
    store.set_state(job_id, JobState.FAILED, error="model error", phase="pipeline")


def test_a_failed_commit_is_rolled_back(tmp_path: Path) -> None:
    # A deferred foreign key is checked at COMMIT: the COMMIT itself fails, as on a full disk.
    path = tmp_path / "jobs.sqlite3"
    with JobStore(path) as store:
        with sqlite3.connect(path) as db:
            db.executescript("""
                CREATE TABLE audit (job_id TEXT REFERENCES nowhere(id) DEFERRABLE INITIALLY DEFERRED);
                CREATE TABLE nowhere (id TEXT PRIMARY KEY);
                CREATE TRIGGER audit_jobs AFTER INSERT ON jobs BEGIN INSERT INTO audit VALUES (NEW.id); END;
            """)
        with pytest.raises(sqlite3.IntegrityError):
            store.create("J1", called_ae="OrganSeg", calling_ae="X", study_uid="1.2", workflow="OrganSeg")
        with sqlite3.connect(path, timeout=1) as db:  # the write lock was released ...
            db.execute("DROP TRIGGER audit_jobs")
        assert store.list_jobs() == []  # ... and nothing of the failed transaction is left
        store.create("J2", called_ae="OrganSeg", calling_ae="X", study_uid="1.2", workflow="OrganSeg")
        assert [j.id for j in store.list_jobs()] == ["J2"]


def test_retry_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with JobStore(path) as store:
        _failed_job(store, "J1")
        # The move back to 'ready' fails, as a write on a full disk would.
        with sqlite3.connect(path) as db:
            db.execute("CREATE TRIGGER no_ready BEFORE UPDATE OF state ON jobs WHEN NEW.state = 'ready'"
                       " BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with pytest.raises(sqlite3.IntegrityError, match="disk full"):
            store.retry("J1")
        job = store.get("J1")  # all of the retry or nothing: still the failed first attempt
        assert (job.state, job.attempt, job.error, job.failed_phase) == (JobState.FAILED, 1, "model error", "pipeline")
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER no_ready")
        retried = store.retry("J1")
        assert (retried.state, retried.attempt, retried.error) == (JobState.READY, 2, None)

