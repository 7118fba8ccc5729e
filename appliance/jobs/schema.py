"""The job store's schema: one list of versioned migrations, for SQLite and PostgreSQL alike.

Each service applies the missing ones at start (:func:`migrate`, in one transaction that also holds
a lock, so two processes starting together cannot both apply one); ``appliance <service> --check``
reports where the database stands (:func:`status`). A database newer than this code is refused:
an older appliance must not write rows it does not understand.

**Adding a migration**: append a :class:`Migration` with the next version; never edit a released
one. SQL uses the tokens of :mod:`appliance.jobs.database`; new columns are nullable or have a
default, so rows written by older code stay valid.

SQLite databases made before migrations existed (they have a ``jobs`` table but no
``schema_migrations``) are adopted: version 1 only creates what is missing, version 2 adds the
columns that those releases added one by one.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.jobs.database import Database, PostgresDatabase, StoreError, Transaction, is_url


@dataclass(frozen=True)
class Migration:
    """One step: SQL statements and/or a function run in the migration's transaction."""

    version: int
    description: str
    statements: tuple[str, ...] = ()
    function: Callable[[Transaction], None] | None = None


def _add_columns(*columns: tuple[str, str, str]) -> Callable[[Transaction], None]:
    """A step adding (table, column, declaration) where missing (old SQLite files may have some)."""

    def run(tx: Transaction) -> None:
        for table, column, declaration in columns:
            if column not in _columns(tx, table):
                tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    return run


def _columns(tx: Transaction, table: str) -> set[str]:
    if tx.dialect == "sqlite":
        return {r[1] for r in tx.execute(f"PRAGMA table_info({table})").fetchall()}
    rows = tx.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                      " AND table_name = ?", (table,)).fetchall()
    return {r[0] for r in rows}


def _export_tasks_for_waiting_jobs(tx: Transaction) -> None:
    # Jobs an older exporter had not finished ('exporting', or 'sending' when it died) get one
    # task per destination, which the new per-destination exporter loops pick up.
    rows = tx.execute("SELECT id, destinations, attempt FROM jobs WHERE state IN ('exporting', 'sending')").fetchall()
    for job_id, destinations, attempt in rows:
        for name in json.loads(destinations):
            tx.execute("INSERT INTO export_tasks (job_id, destination, attempt, state, not_before, updated_at)"
                       " VALUES (?, ?, ?, 'pending', {now}, {now})", (job_id, name, attempt))
    tx.execute("UPDATE jobs SET state = 'exporting' WHERE state = 'sending'")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs, stage and export records, completion requests", (
        """CREATE TABLE IF NOT EXISTS jobs (
            id               TEXT PRIMARY KEY,
            state            TEXT NOT NULL,
            called_ae        TEXT NOT NULL,
            calling_ae       TEXT NOT NULL,
            study_uid        TEXT NOT NULL,
            workflow         TEXT NOT NULL,
            destinations     TEXT NOT NULL,
            version          INTEGER NOT NULL,
            instance_count   INTEGER NOT NULL DEFAULT 0,
            created_at       {real} NOT NULL,
            updated_at       {real} NOT NULL,
            last_instance_at {real},
            ready_at         {real},
            finished_at      {real},
            attempt          INTEGER NOT NULL DEFAULT 1,
            error            TEXT,
            failed_phase     TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, ready_at)",
        "CREATE INDEX IF NOT EXISTS jobs_study ON jobs (study_uid)",
        """CREATE TABLE IF NOT EXISTS stages (
            {row_id}
            job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            stage  TEXT NOT NULL,
            status TEXT NOT NULL,
            detail TEXT NOT NULL,
            at     {real} NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS exports (
            {row_id}
            job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            destination TEXT NOT NULL,
            attempt     INTEGER NOT NULL,
            outcome     TEXT NOT NULL,
            sent        INTEGER NOT NULL,
            failed      INTEGER NOT NULL,
            detail      TEXT NOT NULL,
            at          {real} NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS completion_requests (
            study_uid    TEXT PRIMARY KEY,
            requested_at {real} NOT NULL
        )""",
    )),
    Migration(2, "resumes; stage start, end, duration and attempt", function=_add_columns(
        ("jobs", "resumes", "INTEGER NOT NULL DEFAULT 0"),
        ("stages", "started_at", "{real}"),
        ("stages", "ended_at", "{real}"),
        ("stages", "duration_s", "{real}"),
        ("stages", "attempt", "INTEGER"),
    )),
    Migration(3, "leased claims of jobs; per-destination export tasks; the adapter receiving a job", (
        "ALTER TABLE jobs ADD COLUMN lease_owner TEXT",
        "ALTER TABLE jobs ADD COLUMN intake_owner TEXT",
        "ALTER TABLE jobs ADD COLUMN lease_expires {real}",
        "CREATE INDEX stages_job ON stages (job_id)",
        "CREATE INDEX exports_job ON exports (job_id)",
        """CREATE TABLE export_tasks (
            job_id        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            destination   TEXT NOT NULL,
            attempt       INTEGER NOT NULL,
            state         TEXT NOT NULL,
            tries         INTEGER NOT NULL DEFAULT 0,
            not_before    {real} NOT NULL,
            delivered     TEXT NOT NULL DEFAULT '[]',
            lease_owner   TEXT,
            lease_expires {real},
            detail        TEXT NOT NULL DEFAULT '',
            updated_at    {real} NOT NULL,
            PRIMARY KEY (job_id, destination)
        )""",
        "CREATE INDEX export_tasks_due ON export_tasks (destination, state, not_before)",
    ), _export_tasks_for_waiting_jobs),
    Migration(4, "operators: the sender's address, intake pauses, service heartbeats, the audit log", (
        "ALTER TABLE jobs ADD COLUMN calling_address TEXT NOT NULL DEFAULT ''",
        # The dashboard asks for the jobs changed since its last look several times a second.
        "CREATE INDEX jobs_updated ON jobs (updated_at)",
        """CREATE TABLE intake_pauses (
            ae_title  TEXT PRIMARY KEY,
            paused_at {real} NOT NULL,
            paused_by TEXT NOT NULL,
            reason    TEXT NOT NULL
        )""",
        """CREATE TABLE services (
            name       TEXT NOT NULL,
            host       TEXT NOT NULL,
            pid        INTEGER NOT NULL,
            started_at {real} NOT NULL,
            beat_at    {real} NOT NULL,
            status     TEXT NOT NULL,
            PRIMARY KEY (name, host)
        )""",
        """CREATE TABLE audit (
            {row_id}
            at       {real} NOT NULL,
            username TEXT NOT NULL,
            role     TEXT NOT NULL,
            action   TEXT NOT NULL,
            target   TEXT NOT NULL,
            outcome  TEXT NOT NULL,
            detail   TEXT NOT NULL
        )""",
        "CREATE INDEX audit_target ON audit (target)",
    )),
    Migration(5, "retention: jobs marked pruned, and the audit of each prune", (
        "ALTER TABLE jobs ADD COLUMN pruned_at {real}",
        """CREATE TABLE prunes (
            job_id      TEXT PRIMARY KEY REFERENCES jobs(id),
            reason      TEXT NOT NULL,
            detail      TEXT NOT NULL,
            bytes_freed BIGINT,
            started_at  {real} NOT NULL,
            finished_at {real}
        )""",
        "CREATE INDEX jobs_finished ON jobs (state, finished_at)",
    )),
    Migration(6, "open study groups shared by every adapter", (
        # One open group per (called AE, study): the key any adapter's first instance joins or creates.
        """CREATE TABLE intake_groups (
            called_ae        TEXT NOT NULL,
            study_uid        TEXT NOT NULL,
            job_id           TEXT NOT NULL UNIQUE REFERENCES jobs(id) ON DELETE CASCADE,
            last_instance_at {real} NOT NULL,
            instance_count   INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (called_ae, study_uid)
        )""",
        "CREATE INDEX intake_groups_quiet ON intake_groups (last_instance_at)",
        # Groups that older adapters kept in memory: the first receiving job of each key gets the row.
        "INSERT INTO intake_groups (called_ae, study_uid, job_id, last_instance_at, instance_count)"
        " SELECT called_ae, study_uid, id, COALESCE(last_instance_at, updated_at), instance_count FROM jobs"
        " WHERE state = 'receiving' ORDER BY created_at, id ON CONFLICT (called_ae, study_uid) DO NOTHING",
    )),
)

#: The schema version this code writes.
LATEST = MIGRATIONS[-1].version

_VERSIONS = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  {real} NOT NULL
)"""
# Serialises migrations of concurrent starts on PostgreSQL (SQLite's BEGIN IMMEDIATE already does).
_PG_LOCK = "SELECT pg_advisory_xact_lock(7315001)"


class SchemaTooNew(StoreError):
    """The database was migrated by a newer appliance than this one."""


def _applied(tx: Transaction) -> int:
    row = tx.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def _table_exists(tx: Transaction, table: str) -> bool:
    if tx.dialect == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
    return tx.execute(sql, (table,)).fetchone() is not None


def migrate(db: Database) -> list[Migration]:
    """Apply the missing migrations in one transaction; return them (empty when current)."""
    with db.transaction() as tx:
        if tx.dialect == "postgresql":
            tx.execute(_PG_LOCK)
        tx.execute(_VERSIONS)
        current = _applied(tx)
        if current > LATEST:
            raise SchemaTooNew(f"job store {db.where} has schema version {current}; this appliance knows up to "
                               f"{LATEST}: upgrade the appliance on this host")
        done = [m for m in MIGRATIONS if m.version > current]
        for migration in done:
            for statement in migration.statements:
                tx.execute(statement)
            if migration.function is not None:
                migration.function(tx)
            tx.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, {now})",
                       (migration.version, migration.description))
    return done


def status(target: str | Path) -> str:
    """One line on where the job store at ``target`` (URL or SQLite path) stands, for ``--check``;
    raise SchemaTooNew when it is newer than this code, StoreError when it cannot be read.

    It changes nothing: ``--check`` runs as root (the role's ``validate``), and a SQLite file or
    its WAL side files made by root would lock the service user out. So a SQLite file is read
    ``immutable`` (no lock, no side file; the version comes from the main file) and a missing one
    is left missing.
    """
    if is_url(target):
        db = PostgresDatabase(str(target))
        try:
            with db.transaction() as tx:
                current = _applied(tx) if _table_exists(tx, "schema_migrations") else 0
        finally:
            db.close()
        where = db.where
    else:
        where = str(target)
        if not Path(target).exists():
            return f"job store {where}: not created yet (made at the first start, schema version {LATEST})"
        try:
            with contextlib.closing(sqlite3.connect(f"{Path(target).resolve().as_uri()}?immutable=1",
                                                    uri=True)) as raw:
                tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                current = (raw.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
                           if "schema_migrations" in tables else 0)
        except sqlite3.Error as exc:
            raise StoreError(f"job store {where}: {exc}") from exc
    if current > LATEST:
        raise SchemaTooNew(f"job store {where} has schema version {current}; this appliance knows up to {LATEST}")
    pending = LATEST - current
    return (f"job store {where}: schema version {current}"
            + (f", {pending} migration(s) to apply at start" if pending else " (current)"))
