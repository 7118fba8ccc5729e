"""The job store: what every role reads, and what operators do to jobs.

The store is split by role; each role gets its own object over one :class:`Database`:

* :class:`~appliance.jobs.intake.Intake`: the adapter's side (jobs created while receiving,
  closed when their study is complete);
* :class:`~appliance.jobs.pipeline.PipelineQueue`: the workers' queue (claims with leases, stage
  records, hand-over to export);
* :class:`~appliance.jobs.exports.ExportQueue`: the exporters' queue (one leased task per job and
  destination, backoff as not-before times);
* :class:`JobStore` (here): reading jobs and their records, and the operators' actions
  (``appliance jobs retry|complete``).

A worker, for example::

    db = open_database(config.storage.database_url or config.storage.database)
    migrate(db)
    queue = PipelineQueue(db, owner_id(), lease_seconds=30)
    job = queue.claim()                         # READY -> RUNNING under a lease; None if none
    record_id = queue.start_stage(job, "reader", started_at=time.time())
    queue.finish_stage(record_id, record)       # the stage loop's StageRecord
    queue.hand_over(job)                        # RUNNING -> EXPORTING (tasks per destination)

Every write is one transaction, committed or rolled back as a whole. On SQLite a committed
job row is on disk (``synchronous=FULL``) before the first instance of that job is acknowledged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from appliance.jobs import rows
from appliance.jobs.database import Database, open_database
from appliance.jobs.model import ExportRecord, ExportTask, InvalidTransition, Job, JobState, StageRecord, UnknownJob
from appliance.jobs.schema import migrate

_STAGE_COLUMNS = "stage, status, detail, started_at, ended_at, duration_s, job_id, attempt, at"


class JobStore:
    """Jobs and what happened to them, in ``target``: a :class:`Database`, a ``postgresql://``
    URL or a SQLite path (created with its folder if missing). Opening it applies missing
    migrations. Thread-safe."""

    def __init__(self, target: Database | Path | str) -> None:
        self.db = target if isinstance(target, Database) else open_database(target)
        self._own = not isinstance(target, Database)
        try:
            migrate(self.db)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection if this store opened it."""
        if self._own:
            self.db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job ``job_id``; raise :class:`UnknownJob` if there is none."""
        with self.db.transaction() as tx:
            return rows.get(tx, job_id)

    def list_jobs(self, states: Iterable[JobState] | None = None, study_uid: str | None = None,
                  updated_since: float | None = None) -> list[Job]:
        """Jobs, oldest first, optionally only those in ``states`` and/or of ``study_uid`` and/or
        changed at or after ``updated_since`` (UNIX s)."""
        where: list[str] = []
        args: list[Any] = []
        if updated_since is not None:
            where.append("updated_at >= ?")
            args.append(updated_since)
        if states is not None:
            wanted = [s.value for s in states]
            where.append(f"state IN ({','.join('?' * len(wanted))})")
            args.extend(wanted)
        if study_uid is not None:
            where.append("study_uid = ?")
            args.append(study_uid)
        sql = f"SELECT {rows.JOB_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [rows.job(r) for r in self.db.read(sql + " ORDER BY created_at, id", args)]

    def stages(self, job_id: str) -> list[StageRecord]:
        """Stage results of ``job_id`` in the order they were recorded."""
        found = self.db.read(f"SELECT {_STAGE_COLUMNS} FROM stages WHERE job_id = ? ORDER BY {{rowid}}", (job_id,))
        return [StageRecord(*r) for r in found]  # columns in the dataclass's field order

    def exports(self, job_id: str) -> list[ExportRecord]:
        """Export tries of ``job_id`` in the order they happened."""
        found = self.db.read("SELECT job_id, destination, attempt, outcome, sent, failed, detail, at"
                             " FROM exports WHERE job_id = ? ORDER BY {rowid}", (job_id,))
        return [ExportRecord(*r) for r in found]

    def export_tasks(self, job_id: str) -> list[ExportTask]:
        """The job's export tasks, one per destination, in destination order."""
        found = self.db.read(f"SELECT {rows.TASK_COLUMNS} FROM export_tasks WHERE job_id = ? ORDER BY destination",
                             (job_id,))
        return [rows.task(r) for r in found]

    # -- operators ---------------------------------------------------------------------------

    def set_state(self, job_id: str, state: JobState, *, error: str | None = None,
                  phase: str | None = None) -> Job:
        """Move the job to ``state`` if the life cycle allows it (see ``TRANSITIONS``), whoever
        holds it; ``error`` and ``phase`` (``pipeline``/``export``) are recorded when moving to
        ``failed``. The services use their queue's fenced moves instead."""
        fields: dict[str, Any] = {}
        if state is JobState.FAILED:
            fields.update(error=error or "failed", failed_phase=phase or "pipeline")
        with self.db.transaction() as tx:
            return rows.move(tx, job_id, state, **fields)

    def retry(self, job_id: str, pipeline: bool = False) -> Job:
        """Run a failed job again as a new attempt: back to ``exporting`` if only its export
        failed (unless ``pipeline``; destinations that got everything are not sent again), else
        ``ready`` so a worker runs every stage again."""
        with self.db.transaction() as tx:
            job = rows.get(tx, job_id, lock=True)
            rows.refuse_pruned(tx, job_id)
            if job.state is not JobState.FAILED:
                raise InvalidTransition(f"{job_id}: only a failed job can be retried (it is {job.state.value})")
            target = JobState.EXPORTING if job.failed_phase == "export" and not pipeline else JobState.READY
            return rows.move(tx, job_id, target, attempt=job.attempt + 1, resumes=0, error=None,
                             failed_phase=None, finished_at=None)

    def request_completion(self, study_uid: str) -> int:
        """Ask the adapters to close the study's receiving groups now; return how many there are.

        The request is kept until an adapter takes it, so it also works while they are down.
        """
        with self.db.transaction() as tx:
            tx.execute("INSERT INTO completion_requests (study_uid, requested_at) VALUES (?, ?)"
                       " ON CONFLICT (study_uid) DO UPDATE SET requested_at = excluded.requested_at",
                       (study_uid, time.time()))
            row = tx.execute("SELECT COUNT(*) FROM jobs WHERE study_uid = ? AND state = ?",
                             (study_uid, JobState.RECEIVING.value)).fetchone()
        return int(row[0]) if row else 0


__all__ = ["JobStore", "UnknownJob"]
