"""Retention: which finished jobs are removed, in what order, and the audit of each removal.

A job is *prunable* only when nothing will ever act on it again:

* ``done``, and every one of its destinations has a ``sent`` export task (results delivered
  everywhere; a job with no destination qualifies). Such a job is pruned when it finished more
  than ``max_age_days`` ago, or, oldest first, while the storage root's filesystem is fuller than
  ``disk_watermark_percent``.
* ``failed`` (its results were not delivered, or there are none): only by age, after
  ``failed_max_age_days``, which is unset by default: failed jobs are kept until an operator acts
  (``appliance jobs retry``). The watermark never removes a failed job.

Jobs still receiving, ready, running or exporting are never candidates.

Each prune goes in this order, so a crash at any point leaves nothing the pipeline acts on:

1. one transaction: the job row is locked and checked again, marked ``pruned_at`` and a
   ``prunes`` row (job ID, reason ``age``/``watermark``/``failed-age``, detail) is written. A pruned
   job is ``done``/``failed`` and :meth:`~appliance.jobs.JobStore.retry` refuses it, so nothing
   reads its folder from here on;
2. the folder is removed through :meth:`~appliance.storage.PayloadLayout.remove_job` (renamed
   aside, then deleted);
3. one transaction: the ``prunes`` row gets the bytes freed and its end time, and the job's stage,
   export and export-task rows are deleted. The job row stays (marked pruned) for the audit and
   so that a later job of the same study still gets the next version number.

A prune cut short after step 1 (crash, kill) is finished by the next :meth:`Pruner.run` once it
is ``stale_seconds`` old (its bytes are then those still on disk).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.jobs.database import Database, Transaction
from appliance.storage import PayloadLayout
from appliance.storage.filesystem import existing_ancestor

LOG = logging.getLogger(__name__)

#: ``disk_usage(path)`` -> an object with ``total`` and ``used`` bytes: :func:`shutil.disk_usage`,
#: or a fake in tests (the documented seam for the watermark).
DiskUsage = Callable[[Path], Any]

_DAY = 86400.0


@dataclass(frozen=True)
class RetentionPolicy:
    """What to keep. Every limit is optional; none set keeps everything (the default).

    ``max_age_days``: delivered ``done`` jobs are removed this many days after they finished.
    ``failed_max_age_days``: ``failed`` jobs likewise (None: kept until an operator acts).
    ``disk_watermark_percent``: while the storage root's filesystem is fuller than this (used /
    total, in percent), the oldest delivered ``done`` jobs are removed.
    """

    max_age_days: float | None = None
    failed_max_age_days: float | None = None
    disk_watermark_percent: float | None = None

    @property
    def active(self) -> bool:
        """Whether the policy removes anything at all."""
        return any(v is not None for v in (self.max_age_days, self.failed_max_age_days,
                                           self.disk_watermark_percent))

    def describe(self) -> str:
        """One line for ``appliance jobs`` and logs."""
        if not self.active:
            return "keep every job (no retention policy)"
        parts = []
        if self.max_age_days is not None:
            parts.append(f"delivered jobs {self.max_age_days:g} day(s)")
        parts.append(f"failed jobs {self.failed_max_age_days:g} day(s)" if self.failed_max_age_days is not None
                     else "failed jobs until an operator acts")
        if self.disk_watermark_percent is not None:
            parts.append(f"oldest delivered jobs removed while the disk is over {self.disk_watermark_percent:g} %")
        return "keep " + "; ".join(parts)


@dataclass(frozen=True)
class Prune:
    """One job removed: why (``age``, ``failed-age``, ``watermark``), the disk bytes freed, when."""

    job_id: str
    reason: str
    detail: str
    bytes_freed: int | None
    started_at: float
    finished_at: float | None


@dataclass(frozen=True)
class Freed:
    """What retention removed so far: jobs and disk bytes."""

    jobs: int
    bytes: int


class Pruner:
    """Applies ``policy`` to the jobs in ``db`` whose folders are under ``layout``."""

    def __init__(self, db: Database, layout: PayloadLayout, policy: RetentionPolicy,
                 disk_usage: DiskUsage = shutil.disk_usage, stale_seconds: float = 600.0) -> None:
        self.db = db
        self.layout = layout
        self.policy = policy
        self.disk_usage = disk_usage
        self.stale_seconds = stale_seconds

    def run(self, now: float | None = None) -> list[Prune]:
        """Finish interrupted prunes, then prune by age, then by watermark; return what was pruned."""
        now = time.time() if now is None else now
        done = self.resume(now)
        p = self.policy
        for state, days, reason in (("done", p.max_age_days, "age"), ("failed", p.failed_max_age_days, "failed-age")):
            if days is None:
                continue
            for job_id, finished in self._candidates(state, before=now - days * _DAY):
                detail = f"finished {(now - finished) / _DAY:.1f} day(s) ago; limit {days:g}"
                pruned = self.prune(job_id, reason, detail, state)
                if pruned is not None:
                    done.append(pruned)
        if p.disk_watermark_percent is not None:
            done.extend(self._to_watermark(p.disk_watermark_percent))
        return done

    def resume(self, now: float | None = None) -> list[Prune]:
        """Finish the prunes started more than ``stale_seconds`` ago and never finished."""
        now = time.time() if now is None else now
        found = self.db.read("SELECT job_id, reason, detail FROM prunes WHERE finished_at IS NULL AND started_at < ?",
                             (now - self.stale_seconds,))
        return [self._remove(job_id, reason, detail) for job_id, reason, detail in found]

    def prune(self, job_id: str, reason: str, detail: str, state: str = "done") -> Prune | None:
        """Remove the job if it is (still) prunable in ``state``; None if it is not."""
        with self.db.transaction() as tx:
            row = tx.execute("SELECT state, destinations, pruned_at FROM jobs WHERE id = ? {lock_row}",
                             (job_id,)).fetchone()
            if row is None or row[0] != state or row[2] is not None:
                return None
            if state == "done" and not _delivered(tx, job_id, json.loads(row[1])):
                return None
            now = time.time()
            tx.execute("UPDATE jobs SET pruned_at = ? WHERE id = ?", (now, job_id))
            tx.execute("INSERT INTO prunes (job_id, reason, detail, started_at) VALUES (?, ?, ?, ?)",
                       (job_id, reason, detail, now))
        return self._remove(job_id, reason, detail)

    def _remove(self, job_id: str, reason: str, detail: str) -> Prune:
        freed = self.layout.remove_job(job_id)
        with self.db.transaction() as tx:
            tx.execute("UPDATE prunes SET bytes_freed = ?, finished_at = ? WHERE job_id = ?",
                       (freed, time.time(), job_id))
            for table in ("stages", "exports", "export_tasks"):
                tx.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
            row = tx.execute("SELECT job_id, reason, detail, bytes_freed, started_at, finished_at FROM prunes"
                             " WHERE job_id = ?", (job_id,)).fetchone()
        assert row is not None
        LOG.info("retention: job %s pruned (%s: %s), %d bytes freed", job_id, reason, detail, freed)
        return Prune(*row)

    def _candidates(self, state: str, before: float | None = None) -> list[tuple[str, float]]:
        sql = "SELECT id, finished_at FROM jobs WHERE state = ? AND pruned_at IS NULL AND finished_at IS NOT NULL"
        args: list[Any] = [state]
        if before is not None:
            sql += " AND finished_at < ?"
            args.append(before)
        return [(r[0], float(r[1])) for r in self.db.read(sql + " ORDER BY finished_at, id", args)]

    def _to_watermark(self, limit: float) -> list[Prune]:
        done: list[Prune] = []
        candidates = iter(self._candidates("done"))
        while (percent := self._percent_used()) > limit:
            pruned = None
            for job_id, _ in candidates:
                pruned = self.prune(job_id, "watermark", f"disk {percent:.1f} % used; watermark {limit:g} %")
                if pruned is not None:
                    break
            if pruned is None:
                LOG.warning("retention: disk %.1f %% used, over the %g %% watermark, and no delivered job is left "
                            "to remove", percent, limit)
                break
            done.append(pruned)
        return done

    def _percent_used(self) -> float:
        usage = self.disk_usage(existing_ancestor(self.layout.root))  # the root may not be made yet
        return 100.0 * usage.used / usage.total if usage.total else 0.0


def _delivered(tx: Transaction, job_id: str, destinations: list[str]) -> bool:
    sent = {r[0] for r in tx.execute("SELECT destination FROM export_tasks WHERE job_id = ? AND state = 'sent'",
                                     (job_id,)).fetchall()}
    return set(destinations) <= sent


def prunes(db: Database, limit: int = 100) -> list[Prune]:
    """The latest ``limit`` prunes, newest first."""
    found = db.read("SELECT job_id, reason, detail, bytes_freed, started_at, finished_at FROM prunes"
                    " ORDER BY started_at DESC, job_id LIMIT ?", (limit,))
    return [Prune(*r) for r in found]


def freed(db: Database) -> Freed:
    """Jobs pruned and disk bytes freed so far."""
    row = db.read("SELECT COUNT(*), COALESCE(SUM(bytes_freed), 0) FROM prunes")[0]
    return Freed(int(row[0]), int(row[1]))
