"""The job store API the pipeline worker uses: claiming, transitions, records."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.jobs import ExportRecord, InvalidTransition, JobState, JobStore


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
        store.record_stage("J1", "segment", "failed", "model error")
        failed = store.set_state("J1", JobState.FAILED, error="model error", phase="pipeline")
        assert failed.finished_at is not None and failed.failed_phase == "pipeline"
        assert store.retry("J1").state is JobState.READY
        store.set_state("J2", JobState.EXPORTING)
        assert store.claim_next_export() is not None
        store.record_export(ExportRecord("J2", "MYPACS", 1, "sent", 3, 0, "", time.time()))
        assert store.set_state("J2", JobState.DONE).state is JobState.DONE
        assert [e.outcome for e in store.exports("J2")] == ["sent"]
        assert [s.stage for s in store.stages("J1")] == ["segment"]
        with pytest.raises(InvalidTransition):
            store.retry("J2")
