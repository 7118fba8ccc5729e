"""What an operator does to jobs (the dashboard's actions; the CLI's ``retry`` is
:meth:`~appliance.jobs.JobStore.retry`): cancel, run again, export again, send elsewhere.

Each is one transaction on the job store that locks the job's row and checks its state inside
it, so two operators clicking at once cannot both win, on SQLite and PostgreSQL alike. A job that
runs again gets a new ``attempt``; the stage and export records of earlier attempts stay. These
functions know nothing of payload folders: the caller checks that a job's results exist before
asking to export them again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from appliance.jobs import rows
from appliance.jobs.model import InvalidTransition, Job, JobState
from appliance.jobs.store import JobStore

#: States an operator may cancel from (``done`` is final; ``cancelled`` already is).
CANCELLABLE = frozenset(JobState) - {JobState.DONE, JobState.CANCELLED}
#: States a job may be run or exported again from.
FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


def cancel(store: JobStore, job_id: str, reason: str) -> Job:
    """Cancel ``job_id`` now; ``reason`` (who and why) becomes its error.

    A worker running it loses its lease (it stops at the next stage boundary and writes nothing
    more); its export tasks not yet finished are ``cancelled``, so no exporter claims them and
    one sending now loses its claim at the next acknowledged file. An adapter still receiving it
    leaves it cancelled when the study completes.
    """
    with store.db.transaction() as tx:
        job = rows.get(tx, job_id, lock=True)
        if job.state not in CANCELLABLE:
            raise InvalidTransition(f"{job_id}: a {job.state.value} job cannot be cancelled")
        now = time.time()
        tx.execute("UPDATE export_tasks SET state = 'cancelled', lease_owner = NULL, lease_expires = NULL,"
                   " detail = ?, updated_at = ? WHERE job_id = ? AND state IN ('pending', 'sending')",
                   (reason, now, job_id))
        return rows.move(tx, job_id, JobState.CANCELLED, error=reason, failed_phase=None, finished_at=now)


def rerun(store: JobStore, job_id: str) -> Job:
    """Run every stage of a finished (done, failed or cancelled) job again: ``ready``, next
    attempt; its results then go to every destination."""
    with store.db.transaction() as tx:
        job = _finished(rows.get(tx, job_id, lock=True))
        rows.refuse_pruned(tx, job_id)
        return rows.move(tx, job_id, JobState.READY, attempt=job.attempt + 1, resumes=0, error=None,
                         failed_phase=None, finished_at=None)


def export_again(store: JobStore, job_id: str, destinations: Sequence[str]) -> Job:
    """Send a finished job's results again, to ``destinations`` only: ``exporting``, next attempt.

    Names not yet among the job's destinations are added to them (the results go to one more
    place; the caller checks that they are configured destinations). A destination that got
    everything before gets everything again; one that got part of it gets the rest. The other
    destinations keep their outcome, which still counts for the job's (a destination that failed
    before and is not chosen fails the job again).
    """
    wanted = list(dict.fromkeys(destinations))
    if not wanted:
        raise ValueError("no destination to export to")
    with store.db.transaction() as tx:
        job = _finished(rows.get(tx, job_id, lock=True))
        rows.refuse_pruned(tx, job_id)
        attempt = job.attempt + 1
        known = [*job.destinations, *(d for d in wanted if d not in job.destinations)]
        tasks = {t.destination: t for t in (rows.task(r) for r in tx.execute(
            f"SELECT {rows.TASK_COLUMNS} FROM export_tasks WHERE job_id = ?", (job_id,)).fetchall())}
        for name in wanted:
            task = tasks.get(name)
            if task is None:
                tx.execute("INSERT INTO export_tasks (job_id, destination, attempt, state, not_before, updated_at)"
                           " VALUES (?, ?, ?, 'pending', {now}, ?)", (job_id, name, attempt, time.time()))
            else:
                delivered = "[]" if task.state == "sent" else json.dumps(list(task.delivered))
                tx.execute("UPDATE export_tasks SET state = 'pending', tries = 0, attempt = ?, not_before = {now},"
                           " delivered = ?, lease_owner = NULL, lease_expires = NULL, detail = '', updated_at = ?"
                           " WHERE job_id = ? AND destination = ?", (attempt, delivered, time.time(), job_id, name))
        # Before the move, which reads them (a job without destinations would be done at once).
        tx.execute("UPDATE jobs SET destinations = ? WHERE id = ?", (json.dumps(known), job_id))
        return rows.move(tx, job_id, JobState.EXPORTING, open_tasks=False, attempt=attempt, resumes=0, error=None,
                         failed_phase=None, finished_at=None)


def failed_destinations(store: JobStore, job_id: str) -> list[str]:
    """The job's destinations that did not get everything in its last export (all of them for a
    job whose every destination got everything, or that never exported)."""
    job = store.get(job_id)
    states = {t.destination: t.state for t in store.export_tasks(job_id)}
    missing = [d for d in job.destinations if states.get(d) != "sent"]
    return missing or list(job.destinations)


def _finished(job: Job) -> Job:
    if job.state not in FINISHED:
        raise InvalidTransition(f"{job.id}: it is {job.state.value}; only a done, failed or cancelled job runs again")
    return job
