"""The exporters' queue: one task per job and destination, claimed under a lease, retried at a time.

When a job's results are ready (``exporting``) each destination gets an :class:`ExportTask`. An
exporter loop serves one destination: it claims the next task that is due (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL), sends, and then either finishes the task (``sent``/``failed``) or puts it
back with a not-before time (backoff is a timestamp, never a sleep, so a dead destination holds up
only its own tasks). Each claim is one try; its lease is renewed by the exporter's heartbeat, and a
task whose exporter died is claimed again by any exporter once the lease has expired (that
interrupted try counts). Files the destination acknowledged are recorded one by one and never sent
to it again. When a job's last task is final the job is ``done``, or ``failed`` (phase ``export``)
naming the destinations that did not get everything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable

from appliance.jobs import rows
from appliance.jobs.database import Database, Transaction
from appliance.jobs.model import ExportRecord, ExportTask, Job, JobState, LeaseLost

#: Task states that are still to be worked on.
OPEN = ("pending", "sending")


class ExportQueue:
    """The export tasks in ``db``, seen by the exporter ``owner`` (``host:pid:tag``)."""

    def __init__(self, db: Database, owner: str, lease_seconds: float) -> None:
        self.db = db
        self.owner = owner
        self.lease_seconds = lease_seconds

    def claim(self, destination: str, max_tries: int) -> ExportTask | None:
        """The next task of ``destination`` that is due, as ``sending`` under this exporter's
        lease with ``tries`` + 1; None when none is due. A task whose exporter died (lease
        expired) is claimed again; when that interrupted try was its last, it fails instead."""
        while True:
            with self.db.transaction() as tx:
                row = tx.execute(
                    f"SELECT {rows.TASK_COLUMNS} FROM export_tasks WHERE destination = ?"
                    " AND ((state = 'pending' AND not_before <= {now})"
                    " OR (state = 'sending' AND (lease_expires IS NULL OR lease_expires < {now})))"
                    " ORDER BY not_before, job_id LIMIT 1 {skip_locked}", (destination,)).fetchone()
                if row is None:
                    return None
                task = rows.task(row)
                if task.state == "sending":
                    self._record(tx, task, "interrupted", "exporter crashed or was killed during this try")
                    if task.tries >= max_tries:
                        rows.get(tx, task.job_id, lock=True)
                        detail = f"gave up after {task.tries} attempt(s), the last one interrupted"
                        self._record(tx, task, "failed", detail)
                        self._finish(tx, task, "failed", detail)
                        continue
                tx.execute("UPDATE export_tasks SET state = 'sending', tries = tries + 1, lease_owner = ?,"
                           " lease_expires = {now} + ?, updated_at = ? WHERE job_id = ? AND destination = ?",
                           (self.owner, self.lease_seconds, time.time(), task.job_id, destination))
                return self._get(tx, task.job_id, destination)

    def renew(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Extend this exporter's leases on the (job ID, destination) ``keys``; return those it still holds."""
        held = set()
        with self.db.transaction() as tx:
            for job_id, destination in keys:
                cur = tx.execute("UPDATE export_tasks SET lease_expires = {now} + ? WHERE job_id = ?"
                                 " AND destination = ? AND lease_owner = ? AND state = 'sending'",
                                 (self.lease_seconds, job_id, destination, self.owner))
                if cur.rowcount == 1:
                    held.add((job_id, destination))
        return held

    def delivered(self, task: ExportTask, names: Iterable[str]) -> ExportTask:
        """Record that the destination acknowledged the files ``names`` (raise LeaseLost if the
        task is no longer this exporter's); return the task as it is now."""
        done = sorted({*task.delivered, *names})
        with self.db.transaction() as tx:
            cur = tx.execute("UPDATE export_tasks SET delivered = ?, updated_at = ? WHERE job_id = ?"
                             " AND destination = ? AND lease_owner = ? AND state = 'sending'",
                             (json.dumps(done), time.time(), task.job_id, task.destination, self.owner))
            if cur.rowcount != 1:
                raise LeaseLost(f"export of job {task.job_id} to {task.destination}: no longer held by this exporter")
            return self._get(tx, task.job_id, task.destination)

    def retry_later(self, task: ExportTask, delay: float, record: ExportRecord) -> None:
        """Back to ``pending``, due ``delay`` seconds from now; ``record`` says why."""
        with self.db.transaction() as tx:
            self._own(tx, task)
            tx.execute("UPDATE export_tasks SET state = 'pending', not_before = {now} + ?, lease_owner = NULL,"
                       " lease_expires = NULL, detail = ?, updated_at = ? WHERE job_id = ? AND destination = ?",
                       (delay, record.detail, time.time(), task.job_id, task.destination))
            self._insert_record(tx, record)

    def finish(self, task: ExportTask, state: str, record: ExportRecord) -> Job:
        """End the task as ``sent`` or ``failed`` with ``record``; when it was the job's last open
        task, the job becomes ``done`` or ``failed``. Return the job."""
        with self.db.transaction() as tx:
            rows.get(tx, task.job_id, lock=True)  # the job's tasks finish one at a time
            self._own(tx, task)
            self._insert_record(tx, record)
            return self._finish(tx, task, state, record.detail)

    def expire_all(self) -> list[tuple[str, str]]:
        """Make every ``sending`` task claimable at once; return their (job ID, destination).
        Only the one SQLite exporter, holding the store's lock, may call this: the tasks it
        finds were left by an exporter that is gone."""
        with self.db.transaction() as tx:
            found = tx.execute("SELECT job_id, destination FROM export_tasks WHERE state = 'sending'").fetchall()
            tx.execute("UPDATE export_tasks SET lease_expires = NULL WHERE state = 'sending'")
        return [(r[0], r[1]) for r in found]

    def fail_unknown(self, known: Collection[str]) -> list[ExportTask]:
        """Fail the open tasks of destinations not in ``known`` (not in ``dicom.scu``): no loop
        serves them, and they must not keep their jobs waiting. Return them."""
        marks = ",".join("?" * len(known)) or "''"
        with self.db.transaction() as tx:
            found = [rows.task(r) for r in tx.execute(
                f"SELECT {rows.TASK_COLUMNS} FROM export_tasks WHERE state = 'pending'"
                f" AND destination NOT IN ({marks}) {{skip_locked}}", tuple(known)).fetchall()]
            for task in found:
                rows.get(tx, task.job_id, lock=True)
                detail = "unknown destination (not in dicom.scu)"
                self._record(tx, task, "failed", detail)
                self._finish(tx, task, "failed", detail)
        return found

    # -- helpers -----------------------------------------------------------------------------

    def _get(self, tx: Transaction, job_id: str, destination: str) -> ExportTask:
        row = tx.execute(f"SELECT {rows.TASK_COLUMNS} FROM export_tasks WHERE job_id = ? AND destination = ?",
                         (job_id, destination)).fetchone()
        assert row is not None
        return rows.task(row)

    def _own(self, tx: Transaction, task: ExportTask) -> None:
        current = self._get(tx, task.job_id, task.destination)
        if current.state != "sending" or current.lease_owner != self.owner:
            raise LeaseLost(f"export of job {task.job_id} to {task.destination}: no longer held by this exporter"
                            f" (it is {current.state})")

    def _finish(self, tx: Transaction, task: ExportTask, state: str, detail: str) -> Job:
        tx.execute("UPDATE export_tasks SET state = ?, detail = ?, lease_owner = NULL, lease_expires = NULL,"
                   " updated_at = ? WHERE job_id = ? AND destination = ?",
                   (state, detail, time.time(), task.job_id, task.destination))
        job = rows.get(tx, task.job_id)
        states = tx.execute("SELECT destination, state FROM export_tasks WHERE job_id = ? ORDER BY destination",
                            (task.job_id,)).fetchall()
        if job.state is not JobState.EXPORTING or any(s in OPEN for _, s in states):
            return job
        # Not delivered: failed, or cancelled by an operator before an export again to other destinations.
        failed = [name for name, s in states if s != "sent"]
        if failed:
            return rows.move(tx, job.id, JobState.FAILED, failed_phase="export",
                             error=f"export failed to {', '.join(failed)}")
        return rows.move(tx, job.id, JobState.DONE)

    def _record(self, tx: Transaction, task: ExportTask, outcome: str, detail: str) -> None:
        self._insert_record(tx, ExportRecord(task.job_id, task.destination, task.tries, outcome,
                                             len(task.delivered), 0, detail, time.time()))

    @staticmethod
    def _insert_record(tx: Transaction, record: ExportRecord) -> None:
        tx.execute("INSERT INTO exports (job_id, destination, attempt, outcome, sent, failed, detail, at)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (record.job_id, record.destination, record.attempt, record.outcome, record.sent,
                    record.failed, record.detail, record.at))
