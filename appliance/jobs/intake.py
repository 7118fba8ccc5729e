"""The adapter's side of the job store: jobs created while a study is received, closed when complete."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from appliance.jobs import rows
from appliance.jobs.database import Database
from appliance.jobs.model import InvalidTransition, Job, JobState


class Intake:
    """Receiving jobs in ``db`` (see :mod:`appliance.adapter.grouping` for the policy), as the
    adapter ``owner``: a name that stays the same across its restarts (``host:port``). Jobs are
    created in its name, and :meth:`receiving` returns only its own (and those of releases that
    kept no owner), so an adapter that restarts never adopts the open groups of another adapter
    sharing the job store."""

    def __init__(self, db: Database, owner: str | None = None) -> None:
        self.db = db
        self.owner = owner

    def create(self, job_id: str, *, called_ae: str, calling_ae: str, study_uid: str, workflow: str,
               destinations: Iterable[str] = (), calling_address: str = "") -> Job:
        """Record a new job in state ``receiving``; its version follows the (AE, study)'s last.
        ``calling_address`` is the sending peer's IP address."""
        now = time.time()
        with self.db.transaction() as tx:
            row = tx.execute("SELECT COALESCE(MAX(version), 0) FROM jobs WHERE called_ae = ? AND study_uid = ?",
                             (called_ae, study_uid)).fetchone()
            previous = int(row[0]) if row else 0
            tx.execute("INSERT INTO jobs (id, state, called_ae, calling_ae, study_uid, workflow, destinations,"
                       " version, created_at, updated_at, intake_owner, calling_address)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (job_id, JobState.RECEIVING.value, called_ae, calling_ae, study_uid, workflow,
                        json.dumps(list(destinations)), previous + 1, now, now, self.owner, calling_address))
            return rows.get(tx, job_id)

    def update_progress(self, job_id: str, instance_count: int, last_instance_at: float) -> None:
        """Refresh a receiving job's instance count and last arrival (UNIX seconds)."""
        with self.db.transaction() as tx:
            tx.execute("UPDATE jobs SET instance_count = ?, last_instance_at = ?, updated_at = ? WHERE id = ?",
                       (instance_count, last_instance_at, time.time(), job_id))

    def mark_ready(self, job_id: str, instance_count: int) -> Job:
        """``receiving -> ready`` with the final instance count. A job an operator cancelled while
        it was receiving stays ``cancelled`` (its count is still recorded) and is returned as it is."""
        with self.db.transaction() as tx:
            if rows.get(tx, job_id, lock=True).state is JobState.CANCELLED:
                tx.execute("UPDATE jobs SET instance_count = ? WHERE id = ?", (instance_count, job_id))
                return rows.get(tx, job_id)
            return rows.move(tx, job_id, JobState.READY, instance_count=instance_count, ready_at=time.time())

    def delete(self, job_id: str) -> None:
        """Forget a job that never stored an instance (only allowed while ``receiving``)."""
        with self.db.transaction() as tx:
            cur = tx.execute("DELETE FROM jobs WHERE id = ? AND state = ?", (job_id, JobState.RECEIVING.value))
            if cur.rowcount != 1:
                raise InvalidTransition(f"{job_id}: only a receiving job can be deleted")

    def receiving(self) -> list[Job]:
        """This adapter's jobs still ``receiving``, oldest first."""
        found = self.db.read(f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE state = ?"
                             " AND (intake_owner IS NULL OR intake_owner = ?) ORDER BY created_at, id",
                             (JobState.RECEIVING.value, self.owner))
        return [rows.job(r) for r in found]

    def take_completion_requests(self) -> list[str]:
        """Study UIDs asked to complete since the last call (each returned once)."""
        with self.db.transaction() as tx:
            found = tx.execute("SELECT study_uid FROM completion_requests {skip_locked}").fetchall()
            for (study_uid,) in found:
                tx.execute("DELETE FROM completion_requests WHERE study_uid = ?", (study_uid,))
        return [r[0] for r in found]
