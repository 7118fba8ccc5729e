"""What an operator does to jobs (the dashboard's actions; the CLI's ``retry`` is
:meth:`~appliance.jobs.JobStore.retry`): cancel, run again, export again, send elsewhere.

Each is one transaction on the job store and checks the job's state inside it, so two operators
clicking at once cannot both win. A job that runs again gets a new ``attempt``; the stage and
export records of earlier attempts stay. These functions know nothing of payload folders: the
caller checks that a job's results exist before asking to export them again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from appliance.jobs.model import ExportRecord, InvalidTransition, Job, JobState, UnknownJob
from appliance.jobs.store import JobStore

#: States an operator may cancel from (``done`` is final; ``cancelled`` already is).
CANCELLABLE = frozenset(JobState) - {JobState.DONE, JobState.CANCELLED}
#: States a job may be run or exported again from.
FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


def _state(store: JobStore, job_id: str) -> JobState:
    row = store._db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise UnknownJob(job_id)
    return JobState(row[0])


def cancel(store: JobStore, job_id: str, reason: str) -> Job:
    """Cancel ``job_id`` now; ``reason`` (who and why) becomes its error.

    A job the worker or exporter is working on stays cancelled: their next move of it is
    ignored, so nothing of a cancelled run is exported.
    """
    with store._transaction() as db:
        state = _state(store, job_id)
        if state not in CANCELLABLE:
            raise InvalidTransition(f"{job_id}: a {state.value} job cannot be cancelled")
        now = time.time()
        db.execute("UPDATE jobs SET state = ?, error = ?, failed_phase = NULL, finished_at = ?, updated_at = ?"
                   " WHERE id = ?", (JobState.CANCELLED.value, reason, now, now, job_id))
    return store.get(job_id)


def rerun(store: JobStore, job_id: str) -> Job:
    """Run every stage of a finished (done, failed or cancelled) job again: ``ready``, next attempt."""
    return _again(store, job_id, JobState.READY, None)


def export_again(store: JobStore, job_id: str, destinations: Sequence[str]) -> Job:
    """Send a finished job's results again, to ``destinations`` only: ``exporting``, next attempt.

    Names not yet among the job's destinations are added to them (the results go to one more
    place); the caller checks that the names are configured destinations.
    """
    if not destinations:
        raise ValueError("no destination to export to")
    return _again(store, job_id, JobState.EXPORTING, list(dict.fromkeys(destinations)))


def failed_destinations(store: JobStore, job_id: str) -> list[str]:
    """The job's destinations whose last export try did not deliver (all of them if none was tried)."""
    job = store.get(job_id)
    last: dict[str, ExportRecord] = {r.destination: r for r in store.exports(job_id)}
    targets = job.export_to if job.export_to is not None else job.destinations
    return [d for d in targets if d not in last or last[d].outcome not in ("sent", "skipped")]


def _again(store: JobStore, job_id: str, target: JobState, export_to: list[str] | None) -> Job:
    with store._transaction() as db:
        state = _state(store, job_id)
        if state not in FINISHED:
            raise InvalidTransition(f"{job_id}: it is {state.value}; only a done, failed or cancelled job runs again")
        (destinations,) = db.execute("SELECT destinations FROM jobs WHERE id = ?", (job_id,)).fetchone()
        known = json.loads(destinations)
        known += [d for d in export_to or () if d not in known]
        db.execute(
            "UPDATE jobs SET state = ?, attempt = attempt + 1, resumes = 0, error = NULL, failed_phase = NULL,"
            " finished_at = NULL, updated_at = ?, destinations = ?, export_to = ? WHERE id = ?",
            (target.value, time.time(), json.dumps(known),
             None if export_to is None else json.dumps(export_to), job_id),
        )
    return store.get(job_id)
