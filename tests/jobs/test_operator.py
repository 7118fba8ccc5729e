"""The dashboard's store features on both backends: operators' actions (cancel, run again, export
again, send elsewhere), intake pauses, service heartbeats, the audit log, counts for metrics, and
the changed-since read the jobs list polls."""

from __future__ import annotations

import time

import pytest

from appliance.jobs import (
    ExportQueue,
    ExportRecord,
    Intake,
    InvalidTransition,
    Job,
    JobState,
    JobStore,
    LeaseLost,
    PipelineQueue,
    control,
    operator,
    stats,
)


def exporting(store: JobStore, job_id: str, destinations: tuple[str, ...], study: str = "1.2") -> Job:
    """A job through intake and the worker's queue to ``exporting`` (one task per destination)."""
    intake = Intake(store.db)
    intake.create(job_id, called_ae="OrganSeg", calling_ae="CT", study_uid=study, workflow="organ-seg",
                  destinations=destinations, calling_address="10.1.2.3")
    intake.mark_ready(job_id, 3)
    queue = PipelineQueue(store.db, "w1", 60)
    job = queue.claim()
    assert job is not None and job.id == job_id
    return queue.hand_over(job)


def export(store: JobStore, job_id: str, outcomes: dict[str, str], delivered: tuple[str, ...] = ()) -> Job:
    """Each destination's task ends as ``outcomes`` says (``sent``/``failed``), after ``delivered``."""
    queue = ExportQueue(store.db, "e1", 60)
    for name, outcome in outcomes.items():
        task = queue.claim(name, 3)
        assert task is not None and task.job_id == job_id
        if delivered:
            task = queue.delivered(task, delivered)
        queue.finish(task, outcome, ExportRecord(job_id, name, task.tries, outcome, len(delivered), 0, "", time.time()))
    return store.get(job_id)


def task_states(store: JobStore, job_id: str) -> dict[str, str]:
    return {t.destination: t.state for t in store.export_tasks(job_id)}


def test_the_calling_address_is_kept(store: JobStore) -> None:
    job = exporting(store, "J1", ("PACS",))
    assert job.calling_address == "10.1.2.3" and store.get("J1").calling_address == "10.1.2.3"


def test_cancel_a_running_job_takes_the_workers_lease(store: JobStore) -> None:
    intake, queue = Intake(store.db), PipelineQueue(store.db, "w1", 60)
    intake.create("J1", called_ae="A", calling_ae="B", study_uid="1", workflow="w", destinations=("PACS",))
    intake.mark_ready("J1", 1)
    job = queue.claim()
    assert job is not None
    cancelled = operator.cancel(store, "J1", "cancelled by olga: wrong patient")
    assert (cancelled.state, cancelled.error, cancelled.lease_owner) == (JobState.CANCELLED,
                                                                        "cancelled by olga: wrong patient", None)
    assert cancelled.finished_at is not None
    assert queue.renew(["J1"]) == set()  # the worker's heartbeat finds the claim gone ...
    with pytest.raises(LeaseLost):
        queue.hand_over(job)  # ... and nothing it does afterwards counts
    assert store.get("J1").state is JobState.CANCELLED and store.export_tasks("J1") == []
    with pytest.raises(InvalidTransition, match="cannot be cancelled"):
        operator.cancel(store, "J1", "again")


def test_cancel_an_exporting_job_cancels_its_tasks(store: JobStore) -> None:
    exporting(store, "J1", ("PACS", "ARCHIVE"))
    exporter = ExportQueue(store.db, "e1", 60)
    sending = exporter.claim("PACS", 3)
    assert sending is not None
    operator.cancel(store, "J1", "cancelled by olga")
    assert task_states(store, "J1") == {"ARCHIVE": "cancelled", "PACS": "cancelled"}
    assert exporter.claim("ARCHIVE", 3) is None  # never sent
    with pytest.raises(LeaseLost):  # the sender loses its claim at the next acknowledged file
        exporter.delivered(sending, ["seg.dcm"])
    assert store.get("J1").state is JobState.CANCELLED


def test_a_job_cancelled_while_receiving_stays_cancelled(store: JobStore) -> None:
    intake = Intake(store.db)
    intake.create("J1", called_ae="A", calling_ae="B", study_uid="1", workflow="w")
    operator.cancel(store, "J1", "cancelled by olga")
    job = intake.mark_ready("J1", 7)  # the adapter closes the group afterwards
    assert (job.state, job.instance_count) == (JobState.CANCELLED, 7)
    assert PipelineQueue(store.db, "w1", 60).claim() is None


def test_rerun_a_done_or_cancelled_job(store: JobStore) -> None:
    exporting(store, "J1", ("PACS",))
    export(store, "J1", {"PACS": "sent"})
    job = operator.rerun(store, "J1")
    assert (job.state, job.attempt, job.error, job.finished_at) == (JobState.READY, 2, None, None)
    operator.cancel(store, "J1", "x")
    assert operator.rerun(store, "J1").attempt == 3
    with pytest.raises(InvalidTransition, match="only a done, failed or cancelled job"):
        operator.rerun(store, "J1")  # ready now


def test_retry_export_resends_only_what_did_not_arrive(store: JobStore) -> None:
    exporting(store, "J1", ("PACS", "ARCHIVE"))
    failed = export(store, "J1", {"PACS": "sent", "ARCHIVE": "failed"})
    assert failed.state is JobState.FAILED and failed.failed_phase == "export"
    assert operator.failed_destinations(store, "J1") == ["ARCHIVE"]
    job = operator.export_again(store, "J1", operator.failed_destinations(store, "J1"))
    assert (job.state, job.attempt) == (JobState.EXPORTING, 2)
    assert task_states(store, "J1") == {"ARCHIVE": "pending", "PACS": "sent"}
    assert export(store, "J1", {"ARCHIVE": "sent"}).state is JobState.DONE


def test_send_a_done_job_to_another_destination(store: JobStore) -> None:
    exporting(store, "J1", ("PACS",))
    export(store, "J1", {"PACS": "sent"}, delivered=("seg.dcm",))
    job = operator.export_again(store, "J1", ["ARCHIVE"])
    assert job.destinations == ("PACS", "ARCHIVE") and job.state is JobState.EXPORTING
    assert task_states(store, "J1") == {"ARCHIVE": "pending", "PACS": "sent"}
    assert export(store, "J1", {"ARCHIVE": "sent"}).state is JobState.DONE
    # Export again to a destination that got everything: everything again.
    operator.export_again(store, "J1", ["PACS"])
    (pacs,) = [t for t in store.export_tasks("J1") if t.destination == "PACS"]
    assert (pacs.state, pacs.delivered, pacs.tries) == ("pending", (), 0)


def test_send_a_job_without_destinations_somewhere(store: JobStore) -> None:
    job = exporting(store, "J1", ())
    assert job.state is JobState.DONE
    job = operator.export_again(store, "J1", ["PACS"])
    assert job.state is JobState.EXPORTING and task_states(store, "J1") == {"PACS": "pending"}


def test_export_again_needs_a_finished_job_and_a_destination(store: JobStore) -> None:
    exporting(store, "J1", ("PACS",))
    with pytest.raises(InvalidTransition):
        operator.export_again(store, "J1", ["PACS"])
    with pytest.raises(ValueError, match="no destination"):
        operator.export_again(store, "J1", [])


def test_intake_pauses(store: JobStore) -> None:
    first = control.pause_intake(store.db, "OrganSeg", "olga", "PACS migration")
    again = control.pause_intake(store.db, "OrganSeg", "alice", "other")  # idempotent: the first pause stays
    assert again == first and first.paused_by == "olga"
    assert set(control.paused_titles(store.db)) == {"OrganSeg"}
    assert control.resume_intake(store.db, "OrganSeg") and not control.resume_intake(store.db, "OrganSeg")
    assert control.paused_titles(store.db) == {}


def test_service_heartbeats(store: JobStore) -> None:
    reports = iter([{"associations": []}, {"associations": [{"calling": "CT"}]}])
    beat = control.ServiceHeartbeat(lambda: store.db, "adapter", lambda: next(reports), interval=3600)
    beat.tick(force=True)
    beat.tick()  # not due: nothing written
    (first,) = control.services(store.db)
    assert first.name == "adapter" and first.status == {"associations": []}
    assert first.alive(time.time(), control.HEARTBEAT_SECONDS)
    beat.tick(force=True)  # the same row, updated
    (second,) = control.services(store.db)
    assert second.status == {"associations": [{"calling": "CT"}]} and second.beat_at >= first.beat_at
    beat.stopped()
    (stopped,) = control.services(store.db)
    assert stopped.beat_at == 0 and "stopped_at" in stopped.status


def test_audit_log(store: JobStore) -> None:
    for n, (action, target) in enumerate([("login", ""), ("retry", "J1"), ("cancel", "J2"), ("retry", "J1")]):
        control.audit(store.db, control.AuditEntry(1000.0 + n, "olga", "operator", action, target, "ok", ""))
    assert [e.action for e in control.audit_log(store.db)] == ["retry", "cancel", "retry", "login"]
    assert [e.at for e in control.audit_log(store.db, "J1")] == [1003.0, 1001.0]
    assert len(control.audit_log(store.db, limit=2)) == 2


def test_counts_for_metrics_and_the_changed_since_read(store: JobStore) -> None:
    before = time.time()
    exporting(store, "J1", ("PACS",))
    export(store, "J1", {"PACS": "failed"})
    counts = stats.jobs_by_state(store.db)
    assert counts[JobState.FAILED] == 1 and counts[JobState.DONE] == 0 and set(counts) == set(JobState)
    assert stats.instances_received(store.db) == 3
    assert stats.export_outcomes(store.db) == {("PACS", "failed"): 1}
    assert stats.stage_durations(store.db) == []
    assert [j.id for j in store.list_jobs(updated_since=before)] == ["J1"]
    assert store.list_jobs(updated_since=time.time() + 60) == []
