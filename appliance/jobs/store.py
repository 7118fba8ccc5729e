"""The durable job store: one SQLite database in WAL mode, shared by the adapter, the worker, the
exporter and the CLI (separate processes; SQLite's locking arbitrates).

The API is small on purpose; the pipeline worker needs only::

    store = JobStore(path)
    job = store.claim_next_ready()              # READY -> RUNNING, atomically; None if none
    record_id = store.start_stage(job.id, "reader", job.attempt, started_at=time.time())
    store.finish_stage(record_id, record)       # the stage loop's StageRecord
    store.set_state(job.id, JobState.EXPORTING)  # results are in layout.output_dir(job.id)
    # or: store.set_state(job.id, JobState.FAILED, error="...", phase="pipeline")

Every write is one transaction with ``synchronous=FULL``, committed or rolled back as a whole: a
job row the adapter created is on disk before the first instance of that job is acknowledged.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from appliance.jobs.model import (
    TRANSITIONS,
    ExportRecord,
    InvalidTransition,
    Job,
    JobState,
    StageRecord,
    UnknownJob,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    called_ae        TEXT NOT NULL,
    calling_ae       TEXT NOT NULL,
    study_uid        TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    destinations     TEXT NOT NULL,          -- JSON list of destination names
    version          INTEGER NOT NULL,
    instance_count   INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    last_instance_at REAL,
    ready_at         REAL,
    finished_at      REAL,
    attempt          INTEGER NOT NULL DEFAULT 1,
    error            TEXT,
    failed_phase     TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, ready_at);
CREATE INDEX IF NOT EXISTS jobs_study ON jobs (study_uid);
CREATE TABLE IF NOT EXISTS stages (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    stage  TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    at     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS exports (
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    sent        INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    detail      TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS completion_requests (
    study_uid    TEXT PRIMARY KEY,
    requested_at REAL NOT NULL
);
"""

# Columns added after the first release, as (table, column, declaration). Applied with ALTER
# TABLE when missing, so databases of earlier versions open unchanged; new columns are
# nullable or have a default, which keeps rows written by older code valid.
_ADDED_COLUMNS = (
    ("jobs", "resumes", "INTEGER NOT NULL DEFAULT 0"),
    ("stages", "started_at", "REAL"),
    ("stages", "ended_at", "REAL"),
    ("stages", "duration_s", "REAL"),
    ("stages", "attempt", "INTEGER"),
    ("jobs", "calling_address", "TEXT NOT NULL DEFAULT ''"),
    ("jobs", "export_to", "TEXT"),  # JSON list of destination names, or NULL: all destinations
)

_JOB_COLUMNS = (
    "id, state, called_ae, calling_ae, study_uid, workflow, destinations, version, instance_count, "
    "created_at, updated_at, last_instance_at, ready_at, finished_at, attempt, error, failed_phase, resumes, "
    "calling_address, export_to"
)
_STAGE_COLUMNS = "stage, status, detail, started_at, ended_at, duration_s, job_id, attempt, at"


def _job(row: tuple[Any, ...]) -> Job:
    return Job(
        id=row[0],
        state=JobState(row[1]),
        called_ae=row[2],
        calling_ae=row[3],
        study_uid=row[4],
        workflow=row[5],
        destinations=tuple(json.loads(row[6])),
        version=row[7],
        instance_count=row[8],
        created_at=row[9],
        updated_at=row[10],
        last_instance_at=row[11],
        ready_at=row[12],
        finished_at=row[13],
        attempt=row[14],
        error=row[15],
        failed_phase=row[16],
        resumes=row[17],
        calling_address=row[18],
        export_to=None if row[19] is None else tuple(json.loads(row[19])),
    )


class JobStore:
    """Jobs and what happened to them, in SQLite at ``path`` (created with its folder if missing).

    Thread-safe: one connection guarded by a lock. ``busy_timeout`` (seconds, default 10) is how
    long a write waits for another process's transaction.
    """

    def __init__(self, path: Path | str, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves, so a transaction is exactly what we say.
        self._db = sqlite3.connect(
            str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed job row survives power loss, which the ack rule relies on.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        # Inside one IMMEDIATE transaction, so two processes opening an old database at once
        # cannot both try to add the same column.
        with self._transaction() as db:
            for table, column, declaration in _ADDED_COLUMNS:
                present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so read-then-write (claiming) cannot race
        # another process doing the same.
        # COMMIT is inside the try: a COMMIT that fails (disk full, I/O error, a deferred
        # constraint) must roll back too, or the connection would keep the transaction and the
        # write lock. SQLite rolls some failures back by itself, hence in_transaction.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    # -- reading ---------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job ``job_id``; raise :class:`UnknownJob` if there is none."""
        with self._lock:
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJob(job_id)
        return _job(row)

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
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at, id", args).fetchall()
        return [_job(r) for r in rows]

    def stages(self, job_id: str) -> list[StageRecord]:
        """Stage results of ``job_id`` in the order they were recorded."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_STAGE_COLUMNS} FROM stages WHERE job_id = ? ORDER BY rowid", (job_id,)
            ).fetchall()
        return [StageRecord(*r) for r in rows]  # columns in the dataclass's field order

    def exports(self, job_id: str) -> list[ExportRecord]:
        """Export tries of ``job_id`` in the order they happened."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, destination, attempt, outcome, sent, failed, detail, at "
                "FROM exports WHERE job_id = ? ORDER BY rowid",
                (job_id,),
            ).fetchall()
        return [ExportRecord(*r) for r in rows]

    # -- the adapter's side ------------------------------------------------------------------

    def create(
        self,
        job_id: str,
        *,
        called_ae: str,
        calling_ae: str,
        study_uid: str,
        workflow: str,
        destinations: Iterable[str] = (),
        calling_address: str = "",
    ) -> Job:
        """Record a new job in state ``receiving``; its version follows the (AE, study)'s last.
        ``calling_address`` is the sending peer's IP address."""
        now = time.time()
        with self._transaction() as db:
            (previous,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM jobs WHERE called_ae = ? AND study_uid = ?",
                (called_ae, study_uid),
            ).fetchone()
            db.execute(
                "INSERT INTO jobs (id, state, called_ae, calling_ae, study_uid, workflow, destinations,"
                " version, created_at, updated_at, calling_address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, JobState.RECEIVING.value, called_ae, calling_ae, study_uid, workflow,
                 json.dumps(list(destinations)), previous + 1, now, now, calling_address),
            )
        return self.get(job_id)

    def update_progress(self, job_id: str, instance_count: int, last_instance_at: float) -> None:
        """Refresh a receiving job's instance count and last arrival (UNIX seconds)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET instance_count = ?, last_instance_at = ?, updated_at = ? WHERE id = ?",
                (instance_count, last_instance_at, time.time(), job_id),
            )

    def mark_ready(self, job_id: str, instance_count: int) -> Job:
        """``receiving -> ready`` with the final instance count."""
        return self._move(job_id, JobState.READY, instance_count=instance_count, ready_at=time.time())

    def delete(self, job_id: str) -> None:
        """Forget a job that never stored an instance (only allowed while ``receiving``)."""
        with self._transaction() as db:
            cur = db.execute(
                "DELETE FROM jobs WHERE id = ? AND state = ?",
                (job_id, JobState.RECEIVING.value),
            )
            if cur.rowcount != 1:
                raise InvalidTransition(f"{job_id}: only a receiving job can be deleted")

    def request_completion(self, study_uid: str) -> int:
        """Ask the adapter to close the study's receiving groups now; return how many there are.

        The request is kept until the adapter takes it, so it also works while the adapter is down.
        """
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO completion_requests (study_uid, requested_at) VALUES (?, ?)",
                (study_uid, time.time()),
            )
            (count,) = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE study_uid = ? AND state = ?",
                (study_uid, JobState.RECEIVING.value),
            ).fetchone()
        return int(count)

    def take_completion_requests(self) -> list[str]:
        """Study UIDs asked to complete since the last call (each returned once)."""
        with self._transaction() as db:
            rows = db.execute("SELECT study_uid FROM completion_requests").fetchall()
            db.execute("DELETE FROM completion_requests")
        return [r[0] for r in rows]

    # -- the pipeline worker's side ----------------------------------------------------------

    def claim_next_ready(self) -> Job | None:
        """Take the oldest ``ready`` job and move it to ``running``; None when there is none.

        Atomic across processes: two workers never get the same job.
        """
        return self._claim(JobState.READY, JobState.RUNNING)

    def start_stage(self, job_id: str, stage: str, attempt: int, started_at: float) -> int:
        """Record that ``stage`` started (status ``running``); return the record's ID for
        :meth:`finish_stage`. A record still ``running`` after a crash is marked ``interrupted``
        by :meth:`recover_running`."""
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO stages (job_id, stage, status, detail, at, started_at, attempt)"
                " VALUES (?, ?, 'running', '', ?, ?, ?)",
                (job_id, stage, time.time(), started_at, attempt),
            )
        return int(cur.lastrowid or 0)

    def finish_stage(self, record_id: int, record: StageRecord) -> None:
        """Complete a record made by :meth:`start_stage` with the stage loop's ``record``."""
        with self._transaction() as db:
            db.execute(
                "UPDATE stages SET status = ?, detail = ?, at = ?, ended_at = ?, duration_s = ? WHERE rowid = ?",
                (record.status, record.detail, time.time(), record.ended_at, record.duration_s, record_id),
            )

    def recover_running(self, resume: bool, max_resumes: int) -> list[Job]:
        """Settle jobs a dead worker left ``running``; return them in their new state.

        Their ``running`` stage records become ``interrupted``. With ``resume`` a job goes back
        to ``ready`` (``resumes`` + 1) unless it was already resumed ``max_resumes`` times in this
        attempt; otherwise it fails with phase ``pipeline`` and a reason saying why.
        Only the one worker process that holds the worker lock may call this.
        """
        now = time.time()
        with self._transaction() as db:
            rows = db.execute("SELECT id, resumes FROM jobs WHERE state = ?", (JobState.RUNNING.value,)).fetchall()
            for job_id, resumes in rows:
                cut = db.execute(
                    "SELECT stage FROM stages WHERE job_id = ? AND status = 'running' ORDER BY rowid DESC LIMIT 1",
                    (job_id,),
                ).fetchone()
                where = f"in stage {cut[0]}" if cut else "between stages"
                db.execute(
                    "UPDATE stages SET status = 'interrupted', detail = 'worker crashed or was killed', at = ?"
                    " WHERE job_id = ? AND status = 'running'",
                    (now, job_id),
                )
                if resume and resumes < max_resumes:
                    db.execute(
                        "UPDATE jobs SET state = ?, resumes = resumes + 1, updated_at = ? WHERE id = ?",
                        (JobState.READY.value, now, job_id),
                    )
                else:
                    why = (f"resumed {resumes} time(s) already (worker.max-resumes)" if resume
                           else "worker.interrupted is 'fail'")
                    db.execute(
                        "UPDATE jobs SET state = ?, error = ?, failed_phase = 'pipeline', finished_at = ?,"
                        " updated_at = ? WHERE id = ?",
                        (JobState.FAILED.value, f"interrupted {where} by a worker crash or restart; "
                         f"not resumed: {why}", now, now, job_id),
                    )
        return [self.get(r[0]) for r in rows]

    def set_state(
        self, job_id: str, state: JobState, *, error: str | None = None, phase: str | None = None
    ) -> Job:
        """Move the job to ``state`` if the life cycle allows it (see ``TRANSITIONS``).

        ``error`` and ``phase`` (``pipeline``/``export``) are recorded when moving to ``failed``.
        A ``cancelled`` job is returned unchanged: an operator cancelled it while a service
        worked on it, and the service's result must not revive it.
        """
        fields: dict[str, Any] = {}
        if state is JobState.FAILED:
            fields.update(error=error or "failed", failed_phase=phase or "pipeline")
        if state in (JobState.DONE, JobState.FAILED):
            fields["finished_at"] = time.time()
        return self._move(job_id, state, **fields)

    # -- the exporter's side -----------------------------------------------------------------

    def claim_next_export(self) -> Job | None:
        """Take the oldest ``exporting`` job and move it to ``sending``; None when there is none."""
        return self._claim(JobState.EXPORTING, JobState.SENDING)

    def record_export(self, record: ExportRecord) -> None:
        """Append one export try's outcome."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO exports (job_id, destination, attempt, outcome, sent, failed, detail, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.job_id, record.destination, record.attempt, record.outcome, record.sent,
                 record.failed, record.detail, record.at),
            )

    def requeue_interrupted_exports(self) -> list[str]:
        """``sending -> exporting`` for jobs a crashed exporter left behind; return their IDs."""
        with self._transaction() as db:
            rows = db.execute("SELECT id FROM jobs WHERE state = ?", (JobState.SENDING.value,)).fetchall()
            db.execute(
                "UPDATE jobs SET state = ?, updated_at = ? WHERE state = ?",
                (JobState.EXPORTING.value, time.time(), JobState.SENDING.value),
            )
        return [r[0] for r in rows]

    # -- operators ---------------------------------------------------------------------------

    def retry(self, job_id: str, pipeline: bool = False) -> Job:
        """Run a failed job again as a new attempt: back to ``exporting`` if only its export
        failed (unless ``pipeline``), else ``ready`` so the worker runs every stage again."""
        with self._transaction() as db:
            row = db.execute("SELECT state, failed_phase FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise UnknownJob(job_id)
            if row[0] != JobState.FAILED.value:
                raise InvalidTransition(f"{job_id}: only a failed job can be retried (it is {row[0]})")
            target = JobState.EXPORTING if row[1] == "export" and not pipeline else JobState.READY
            # A new pipeline run exports to every destination again.
            db.execute(
                "UPDATE jobs SET state = ?, attempt = attempt + 1, resumes = 0, error = NULL, failed_phase = NULL,"
                " finished_at = NULL, updated_at = ?,"
                " export_to = CASE WHEN ? THEN NULL ELSE export_to END WHERE id = ?",
                (target.value, time.time(), target is JobState.READY, job_id),
            )
        return self.get(job_id)

    # -- helpers -----------------------------------------------------------------------------

    def _claim(self, source: JobState, target: JobState) -> Job | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE state = ? ORDER BY COALESCE(ready_at, created_at), id LIMIT 1",
                (source.value,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?",
                (target.value, time.time(), row[0]),
            )
        return self.get(row[0])

    def _move(self, job_id: str, target: JobState, **fields: Any) -> Job:
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise UnknownJob(job_id)
            current = JobState(row[0])
            if current is JobState.CANCELLED:
                return _job(db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone())
            if target not in TRANSITIONS[current]:
                raise InvalidTransition(f"{job_id}: {current.value} -> {target.value} is not allowed")
            fields.update(state=target.value, updated_at=time.time())
            assignments = ", ".join(f"{name} = ?" for name in fields)
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id))
        return self.get(job_id)
