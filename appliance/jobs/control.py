"""Records next to the jobs that steer and watch the services: intake pauses per AE title, each
service's heartbeat, and the audit log of operators' actions.

* The dashboard pauses and resumes intake (:func:`pause_intake`, :func:`resume_intake`); the
  adapter reads :func:`paused_titles` every tick and refuses new associations to a paused AE
  title.
* Each service writes a :class:`Heartbeat` every few seconds with what it is doing (open
  associations, running jobs); :func:`services` reads them for the health page.
* :func:`audit` appends who did what to which target, and whether it worked.

Times are UNIX seconds. The tables live in the job store's database, created on first use.
"""

from __future__ import annotations

import json
import os
import socket
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.jobs.store import JobStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intake_pauses (
    ae_title  TEXT PRIMARY KEY,
    paused_at REAL NOT NULL,
    paused_by TEXT NOT NULL,
    reason    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS services (
    name       TEXT NOT NULL,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    started_at REAL NOT NULL,
    beat_at    REAL NOT NULL,
    status     TEXT NOT NULL,          -- JSON object, the service's own report
    PRIMARY KEY (name, host)
);
CREATE TABLE IF NOT EXISTS audit (
    at      REAL NOT NULL,
    user    TEXT NOT NULL,
    role    TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,             -- 'ok' or why it was refused
    detail  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target);
"""

_READY: weakref.WeakSet[JobStore] = weakref.WeakSet()


def _db(store: JobStore) -> JobStore:
    if store not in _READY:
        with store._transaction() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
        _READY.add(store)
    return store


# -- intake ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """Intake of ``ae_title`` is paused since ``paused_at``, by ``paused_by``, because ``reason``."""

    ae_title: str
    paused_at: float
    paused_by: str
    reason: str


def pause_intake(store: JobStore, ae_title: str, by: str, reason: str = "") -> Pause:
    """Refuse new associations to ``ae_title`` from the adapter's next tick on (idempotent)."""
    pause = Pause(ae_title, time.time(), by, reason)
    with _db(store)._transaction() as db:
        db.execute("INSERT OR IGNORE INTO intake_pauses VALUES (?, ?, ?, ?)",
                   (pause.ae_title, pause.paused_at, pause.paused_by, pause.reason))
    return paused_titles(store)[ae_title]


def resume_intake(store: JobStore, ae_title: str) -> bool:
    """Accept ``ae_title``'s associations again; return whether it was paused."""
    with _db(store)._transaction() as db:
        return db.execute("DELETE FROM intake_pauses WHERE ae_title = ?", (ae_title,)).rowcount > 0


def paused_titles(store: JobStore) -> dict[str, Pause]:
    """Paused AE titles and their pause records."""
    with _db(store)._lock:
        rows = store._db.execute("SELECT ae_title, paused_at, paused_by, reason FROM intake_pauses").fetchall()
    return {r[0]: Pause(*r) for r in rows}


# -- heartbeats --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceStatus:
    """A service's last heartbeat: ``status`` is what it reported (e.g. ``associations``)."""

    name: str
    host: str
    pid: int
    started_at: float
    beat_at: float
    status: dict[str, Any]

    def alive(self, now: float, interval: float) -> bool:
        """Whether it beat within three ``interval`` s of ``now``."""
        return now - self.beat_at <= 3 * interval


#: Seconds between heartbeats; a service is shown dead after three missed ones.
HEARTBEAT_SECONDS = 2.0


class Heartbeat:
    """Writes ``name``'s heartbeat with ``status()`` when :meth:`tick` is called and one is due
    (every ``interval`` seconds). ``store`` is the job store or what returns it (opened at first
    use by the service). A store error is swallowed: the next tick tries again, and the
    dashboard shows the gap."""

    def __init__(self, store: JobStore | Callable[[], JobStore], name: str,
                 status: Callable[[], dict[str, Any]], interval: float = HEARTBEAT_SECONDS) -> None:
        self._store_of = store if not isinstance(store, JobStore) else lambda: store
        self._name = name
        self._status = status
        self._interval = interval
        self._next = 0.0
        self._started = time.time()

    def tick(self, force: bool = False) -> None:
        """Write the heartbeat if one is due (or ``force``)."""
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self._interval
        try:
            report = json.dumps(self._status())
            with _db(self._store_of())._transaction() as db:
                db.execute("INSERT OR REPLACE INTO services VALUES (?, ?, ?, ?, ?, ?)",
                           (self._name, socket.gethostname(), os.getpid(), self._started, time.time(), report))
        except Exception:  # noqa: BLE001 - a heartbeat must never stop the service it reports on
            return

    def stopped(self) -> None:
        """Record a clean stop (the dashboard then shows it stopped, not dead)."""
        try:
            with _db(self._store_of())._transaction() as db:
                db.execute("UPDATE services SET beat_at = 0, status = ? WHERE name = ? AND host = ?",
                           (json.dumps({"stopped_at": time.time()}), self._name, socket.gethostname()))
        except Exception:  # noqa: BLE001
            return


def services(store: JobStore) -> list[ServiceStatus]:
    """Every service's last heartbeat, by name and host."""
    with _db(store)._lock:
        rows = store._db.execute(
            "SELECT name, host, pid, started_at, beat_at, status FROM services ORDER BY name, host").fetchall()
    return [ServiceStatus(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


# -- audit -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    """One operator action: ``outcome`` is ``ok`` or why it was refused."""

    at: float
    user: str
    role: str
    action: str
    target: str
    outcome: str
    detail: str


def audit(store: JobStore, entry: AuditEntry) -> None:
    """Append ``entry`` to the audit log."""
    with _db(store)._transaction() as db:
        db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (entry.at, entry.user, entry.role, entry.action, entry.target, entry.outcome, entry.detail))


def audit_log(store: JobStore, target: str | None = None, limit: int = 500) -> list[AuditEntry]:
    """The newest ``limit`` entries, newest first, optionally only those about ``target``."""
    sql = "SELECT at, user, role, action, target, outcome, detail FROM audit"
    args: list[Any] = []
    if target is not None:
        sql += " WHERE target = ?"
        args.append(target)
    with _db(store)._lock:
        rows = store._db.execute(sql + " ORDER BY at DESC, rowid DESC LIMIT ?", (*args, limit)).fetchall()
    return [AuditEntry(*r) for r in rows]
