"""The pipeline workers' queue: claims with leases, stage records, the hand-over to export.

A worker claims a ``ready`` job atomically (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any
number of workers on any number of hosts share the queue; ``BEGIN IMMEDIATE`` on SQLite) and
holds it under a lease of ``lease_seconds``, renewed by its heartbeat (:meth:`renew`). Every move
it makes afterwards is fenced: it succeeds only while this worker still holds the lease, and
raises :class:`LeaseLost` otherwise. A job whose lease expired (its worker died, or its host was
lost) is taken back by :meth:`recover` in any worker: resumed from the first stage, at most
``worker.max-resumes`` times per attempt, then failed with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from appliance.jobs import rows
from appliance.jobs.database import Database, Transaction
from appliance.jobs.model import Job, JobState, LeaseLost, StageRecord


class PipelineQueue:
    """The queue of ``ready`` jobs in ``db``, seen by the worker ``owner`` (``host:pid:tag``)."""

    def __init__(self, db: Database, owner: str, lease_seconds: float) -> None:
        self.db = db
        self.owner = owner
        self.lease_seconds = lease_seconds

    def claim(self) -> Job | None:
        """Take the oldest ``ready`` job, ``running`` under this worker's lease; None when none."""
        with self.db.transaction() as tx:
            row = tx.execute("SELECT id FROM jobs WHERE state = ? ORDER BY COALESCE(ready_at, created_at), id"
                             " LIMIT 1 {skip_locked}", (JobState.READY.value,)).fetchone()
            if row is None:
                return None
            tx.execute("UPDATE jobs SET state = ?, lease_owner = ?, lease_expires = {now} + ?, updated_at = ?"
                       " WHERE id = ?", (JobState.RUNNING.value, self.owner, self.lease_seconds, time.time(), row[0]))
            return rows.get(tx, row[0])

    def renew(self, job_ids: Collection[str]) -> set[str]:
        """Extend this worker's leases on ``job_ids``; return those it still holds."""
        if not job_ids:
            return set()
        marks = ",".join("?" * len(job_ids))
        with self.db.transaction() as tx:
            tx.execute(f"UPDATE jobs SET lease_expires = {{now}} + ? WHERE lease_owner = ? AND state = ?"
                       f" AND id IN ({marks})", (self.lease_seconds, self.owner, JobState.RUNNING.value, *job_ids))
            held = tx.execute(f"SELECT id FROM jobs WHERE lease_owner = ? AND state = ? AND id IN ({marks})",
                              (self.owner, JobState.RUNNING.value, *job_ids)).fetchall()
        return {r[0] for r in held}

    def start_stage(self, job: Job, stage: str, started_at: float) -> int:
        """Record that ``stage`` started (status ``running``); return the record's ID for
        :meth:`finish_stage`. A record still ``running`` when its job is recovered becomes
        ``interrupted``."""
        with self.db.transaction() as tx:
            row = tx.execute("INSERT INTO stages (job_id, stage, status, detail, at, started_at, attempt)"
                             " VALUES (?, ?, 'running', '', ?, ?, ?) RETURNING {rowid}",
                             (job.id, stage, time.time(), started_at, job.attempt)).fetchone()
        return int(row[0]) if row else 0

    def finish_stage(self, record_id: int, record: StageRecord) -> None:
        """Complete a record made by :meth:`start_stage` with the stage loop's ``record``."""
        with self.db.transaction() as tx:
            tx.execute("UPDATE stages SET status = ?, detail = ?, at = ?, ended_at = ?, duration_s = ?"
                       " WHERE {rowid} = ?",
                       (record.status, record.detail, time.time(), record.ended_at, record.duration_s, record_id))

    def hand_over(self, job: Job) -> Job:
        """``running -> exporting``: results are in the job's ``output/``; one export task per
        destination is queued (a job without destinations is ``done``)."""
        return self._move(job, JobState.EXPORTING)

    def fail(self, job: Job, reason: str) -> Job:
        """``running -> failed`` with ``reason`` (phase ``pipeline``)."""
        return self._move(job, JobState.FAILED, error=reason, failed_phase="pipeline")

    def release(self, job: Job) -> Job:
        """``running -> ready``: stopped at a stage boundary (shutdown); the next claim starts over."""
        return self._move(job, JobState.READY)

    def recover(self, resume: bool, max_resumes: int, expired_only: bool = True) -> list[Job]:
        """Settle jobs whose worker is gone; return them in their new state.

        ``expired_only`` (a fleet): jobs whose lease expired. Without it (SQLite, where the one
        worker holds the store's lock): every ``running`` job. Their ``running`` stage records
        become ``interrupted``. With ``resume`` a job goes back to ``ready`` (``resumes`` + 1)
        unless it was already resumed ``max_resumes`` times in this attempt; otherwise it fails
        with phase ``pipeline`` and a reason saying why.
        """
        expired = " AND (lease_expires IS NULL OR lease_expires < {now})" if expired_only else ""
        with self.db.transaction() as tx:
            found = tx.execute(f"SELECT id, resumes FROM jobs WHERE state = ?{expired} {{skip_locked}}",
                               (JobState.RUNNING.value,)).fetchall()
            return [self._settle(tx, job_id, resumes, resume, max_resumes) for job_id, resumes in found]

    @staticmethod
    def _settle(tx: Transaction, job_id: str, resumes: int, resume: bool, max_resumes: int) -> Job:
        cut = tx.execute("SELECT stage FROM stages WHERE job_id = ? AND status = 'running'"
                         " ORDER BY {rowid} DESC LIMIT 1", (job_id,)).fetchone()
        where = f"in stage {cut[0]}" if cut else "between stages"
        tx.execute("UPDATE stages SET status = 'interrupted', detail = 'worker crashed or was killed', at = ?"
                   " WHERE job_id = ? AND status = 'running'", (time.time(), job_id))
        if resume and resumes < max_resumes:
            return rows.move(tx, job_id, JobState.READY, resumes=resumes + 1)
        why = (f"resumed {resumes} time(s) already (worker.max-resumes)" if resume
               else "worker.interrupted is 'fail'")
        return rows.move(tx, job_id, JobState.FAILED, failed_phase="pipeline",
                         error=f"interrupted {where} by a worker crash or restart; not resumed: {why}")

    def _move(self, job: Job, target: JobState, **fields: Any) -> Job:
        with self.db.transaction() as tx:
            current = rows.get(tx, job.id, lock=True)
            if current.state is not JobState.RUNNING or current.lease_owner != self.owner:
                raise LeaseLost(f"job {job.id}: no longer held by this worker (it is {current.state.value}"
                                f"{', held by ' + current.lease_owner if current.lease_owner else ''})")
            return rows.move(tx, job.id, target, **fields)
