"""The adapter's side of the job store: jobs created while a study is received, closed when complete."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from appliance.jobs import rows
from appliance.jobs.database import Database, StoreError, Transaction
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

    def join(self, job_id: str, *, called_ae: str, calling_ae: str, study_uid: str, workflow: str,
             destinations: Iterable[str] = (), calling_address: str = "") -> tuple[Job, bool]:
        """The job of the open group of (``called_ae``, ``study_uid``), whichever adapter opened it,
        and False; or, when there is none, a new ``receiving`` job ``job_id`` and its group, and True.
        Either way the group's last instance time becomes now, so it cannot close under the caller.

        Atomic across adapters: the group's key is unique, so of two adapters creating it at once
        (``INSERT ... ON CONFLICT DO NOTHING``) one wins and the other joins the winner's job.
        """
        with self.db.transaction() as tx:
            found = self._touch_key(tx, called_ae, study_uid)
            if found is not None:
                return rows.get(tx, found), False
            self._insert_job(tx, job_id, called_ae, calling_ae, study_uid, workflow, destinations, calling_address)
            cur = tx.execute("INSERT INTO intake_groups (called_ae, study_uid, job_id, last_instance_at)"
                             " VALUES (?, ?, ?, {now}) ON CONFLICT (called_ae, study_uid) DO NOTHING",
                             (called_ae, study_uid, job_id))
            if cur.rowcount == 1:
                return rows.get(tx, job_id), True
            # Another adapter committed the group meanwhile (PostgreSQL waited for it): join it.
            tx.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            found = self._touch_key(tx, called_ae, study_uid)
            if found is None:
                raise StoreError(f"study group ({called_ae}, {study_uid}) vanished while joining it; try again")
            return rows.get(tx, found), False

    @staticmethod
    def _touch_key(tx: Transaction, called_ae: str, study_uid: str) -> str | None:
        row = tx.execute("UPDATE intake_groups SET last_instance_at = {now} WHERE called_ae = ? AND study_uid = ?"
                         " RETURNING job_id", (called_ae, study_uid)).fetchone()
        return str(row[0]) if row else None

    def create(self, job_id: str, *, called_ae: str, calling_ae: str, study_uid: str, workflow: str,
               destinations: Iterable[str] = (), calling_address: str = "") -> Job:
        """Record a new job in state ``receiving`` outside any group (tests and tools); its version
        follows the (AE, study)'s last. ``calling_address`` is the sending peer's IP address."""
        with self.db.transaction() as tx:
            self._insert_job(tx, job_id, called_ae, calling_ae, study_uid, workflow, destinations, calling_address)
            return rows.get(tx, job_id)

    def _insert_job(self, tx: Transaction, job_id: str, called_ae: str, calling_ae: str, study_uid: str,
                    workflow: str, destinations: Iterable[str], calling_address: str) -> None:
        now = time.time()
        row = tx.execute("SELECT COALESCE(MAX(version), 0) FROM jobs WHERE called_ae = ? AND study_uid = ?",
                         (called_ae, study_uid)).fetchone()
        previous = int(row[0]) if row else 0
        tx.execute("INSERT INTO jobs (id, state, called_ae, calling_ae, study_uid, workflow, destinations,"
                   " version, created_at, updated_at, intake_owner, calling_address)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (job_id, JobState.RECEIVING.value, called_ae, calling_ae, study_uid, workflow,
                    json.dumps(list(destinations)), previous + 1, now, now, self.owner, calling_address))

    def touch(self, job_id: str, added: int) -> bool:
        """Record activity in the job's group now (``added`` instances stored since the last call);
        False if the group is closed (another adapter closed it)."""
        with self.db.transaction() as tx:
            cur = tx.execute("UPDATE intake_groups SET last_instance_at = {now}, instance_count = instance_count + ?"
                             " WHERE job_id = ?", (added, job_id))
            if cur.rowcount != 1:
                return False
            tx.execute("UPDATE jobs SET instance_count = (SELECT instance_count FROM intake_groups WHERE job_id = ?),"
                       " last_instance_at = {now}, updated_at = {now} WHERE id = ?", (job_id, job_id))
            return True

    def close(self, job_id: str, quiet_seconds: float, instance_count: int) -> Job | None:
        """Close the job's group if no adapter stored an instance in it for ``quiet_seconds`` (database
        clock): ``receiving -> ready`` with ``instance_count`` (what is in its folder), or, with none,
        the job is deleted. Exactly one caller succeeds; None for the others and while it is not
        quiet. Returns the job (ready, or as it was before its deletion)."""
        with self.db.transaction() as tx:
            cur = tx.execute("DELETE FROM intake_groups WHERE job_id = ? AND last_instance_at <= {now} - ?",
                             (job_id, quiet_seconds))
            if cur.rowcount != 1:
                return None
            if instance_count == 0:
                job = rows.get(tx, job_id)
                tx.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
                return job
            return self._ready(tx, job_id, instance_count)

    def quiet_groups(self, quiet_seconds: float) -> list[Job]:
        """Receiving jobs whose group had no instance for ``quiet_seconds``: any adapter may close
        them (their adapter may be dead)."""
        found = self.db.read(f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE id IN (SELECT job_id FROM intake_groups"
                             " WHERE last_instance_at <= {now} - ?) ORDER BY created_at, id", (quiet_seconds,))
        return [rows.job(r) for r in found]

    def open_groups_of(self, study_uid: str) -> list[Job]:
        """Receiving jobs of the study's open groups (for completion requests)."""
        found = self.db.read(f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE id IN (SELECT job_id FROM intake_groups"
                             " WHERE study_uid = ?)", (study_uid,))
        return [rows.job(r) for r in found]

    def mark_ready(self, job_id: str, instance_count: int) -> Job:
        """``receiving -> ready`` with the final instance count. A job an operator cancelled while
        it was receiving stays ``cancelled`` (its count is still recorded) and is returned as it is."""
        with self.db.transaction() as tx:
            return self._ready(tx, job_id, instance_count)

    @staticmethod
    def _ready(tx: Transaction, job_id: str, instance_count: int) -> Job:
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
        """This adapter's jobs still ``receiving`` outside any open group (left by a release that
        grouped in memory), oldest first."""
        found = self.db.read(f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE state = ?"
                             " AND (intake_owner IS NULL OR intake_owner = ?)"
                             " AND id NOT IN (SELECT job_id FROM intake_groups) ORDER BY created_at, id",
                             (JobState.RECEIVING.value, self.owner))
        return [rows.job(r) for r in found]

    def take_completion_requests(self) -> list[str]:
        """Study UIDs asked to complete since the last call (each returned once)."""
        with self.db.transaction() as tx:
            found = tx.execute("SELECT study_uid FROM completion_requests {skip_locked}").fetchall()
            for (study_uid,) in found:
                tx.execute("DELETE FROM completion_requests WHERE study_uid = ?", (study_uid,))
        return [r[0] for r in found]
