"""Rows of the job store as model objects, and the writes more than one role makes (internal)."""

from __future__ import annotations

import json
import time
from typing import Any

from appliance.jobs.database import Transaction
from appliance.jobs.model import TRANSITIONS, ExportTask, InvalidTransition, Job, JobState, UnknownJob

JOB_COLUMNS = (
    "id, state, called_ae, calling_ae, study_uid, workflow, destinations, version, instance_count, created_at, "
    "updated_at, last_instance_at, ready_at, finished_at, attempt, error, failed_phase, resumes, lease_owner, "
    "lease_expires, calling_address"
)
TASK_COLUMNS = ("job_id, destination, attempt, state, tries, not_before, delivered, lease_owner, lease_expires, "
                "detail, updated_at")


def job(row: tuple[Any, ...]) -> Job:
    """A :class:`Job` from a row of :data:`JOB_COLUMNS`."""
    return Job(
        id=row[0], state=JobState(row[1]), called_ae=row[2], calling_ae=row[3], study_uid=row[4],
        workflow=row[5], destinations=tuple(json.loads(row[6])), version=row[7], instance_count=row[8],
        created_at=row[9], updated_at=row[10], last_instance_at=row[11], ready_at=row[12],
        finished_at=row[13], attempt=row[14], error=row[15], failed_phase=row[16], resumes=row[17],
        lease_owner=row[18], lease_expires=row[19], calling_address=row[20],
    )


def task(row: tuple[Any, ...]) -> ExportTask:
    """An :class:`ExportTask` from a row of :data:`TASK_COLUMNS`."""
    return ExportTask(row[0], row[1], row[2], row[3], row[4], row[5], tuple(json.loads(row[6])), row[7],
                      row[8], row[9], row[10])


def get(tx: Transaction, job_id: str, lock: bool = False) -> Job:
    """The job ``job_id`` (with ``lock``, its row locked until the transaction ends)."""
    row = tx.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ? {'{lock_row}' if lock else ''}",
                     (job_id,)).fetchone()
    if row is None:
        raise UnknownJob(job_id)
    return job(row)


def refuse_pruned(tx: Transaction, job_id: str) -> None:
    """Raise :class:`InvalidTransition` when the retention policy removed ``job_id``'s files:
    nothing can run or send it again."""
    if tx.execute("SELECT pruned_at FROM jobs WHERE id = ?", (job_id,)).fetchone() != (None,):
        raise InvalidTransition(f"{job_id}: its files were removed by the retention policy")


def move(tx: Transaction, job_id: str, target: JobState, *, open_tasks: bool = True, **fields: Any) -> Job:
    """Move the job to ``target`` if the life cycle allows it, setting ``fields`` too; entering
    ``exporting`` creates its export tasks (unless ``open_tasks`` is false: the caller has set
    them up), and with no destination the job is ``done`` at once."""
    current = get(tx, job_id, lock=True)
    if target not in TRANSITIONS[current.state]:
        raise InvalidTransition(f"{job_id}: {current.state.value} -> {target.value} is not allowed")
    now = time.time()
    if target is JobState.EXPORTING:
        if not current.destinations:
            target = JobState.DONE
        elif open_tasks:
            open_export_tasks(tx, current, fresh=current.state is not JobState.FAILED,
                              attempt=int(fields.get("attempt", current.attempt)))
    if target in (JobState.DONE, JobState.FAILED):
        fields["finished_at"] = now
    if target is not JobState.RUNNING:
        fields.update(lease_owner=None, lease_expires=None)
    fields.update(state=target.value, updated_at=now)
    assignments = ", ".join(f"{name} = ?" for name in fields)
    tx.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id))
    return get(tx, job_id)


def open_export_tasks(tx: Transaction, current: Job, fresh: bool, attempt: int) -> None:
    """One ``pending`` task per destination of ``current``, due now.

    ``fresh`` (new results from the pipeline): every destination again. Otherwise (an operator's
    export retry) the destinations that already have everything keep their ``sent`` task, and the
    others keep the list of files they acknowledged: nothing is sent twice.
    """
    if fresh:
        tx.execute("DELETE FROM export_tasks WHERE job_id = ?", (current.id,))
    else:
        tx.execute("UPDATE export_tasks SET state = 'pending', tries = 0, attempt = ?, not_before = {now},"
                   " lease_owner = NULL, lease_expires = NULL, detail = '', updated_at = ?"
                   " WHERE job_id = ? AND state <> 'sent'", (attempt, time.time(), current.id))
    kept = {r[0] for r in tx.execute("SELECT destination FROM export_tasks WHERE job_id = ?",
                                     (current.id,)).fetchall()}
    for name in current.destinations:
        if name not in kept:
            tx.execute("INSERT INTO export_tasks (job_id, destination, attempt, state, not_before, updated_at)"
                       " VALUES (?, ?, ?, 'pending', {now}, ?)", (current.id, name, attempt, time.time()))
