"""Records next to the jobs that steer and watch the services: intake pauses per AE title, each
service's heartbeat, and the audit log of operators' actions.

* The dashboard pauses and resumes intake (:func:`pause_intake`, :func:`resume_intake`); every
  adapter reads :func:`paused_titles` each tick and refuses new associations to a paused AE title.
* Each service writes a :class:`ServiceHeartbeat` every few seconds with what it is doing (open
  associations, running jobs), one row per service and host; :func:`services` reads them for the
  health page. (Not the lease heartbeat of :mod:`appliance.jobs.lease`, which renews claims.)
* :func:`audit` appends who did what to which target, and whether it worked.

Times are UNIX seconds. The tables are the job store's (schema version 4,
:mod:`appliance.jobs.schema`), on SQLite and PostgreSQL alike; every function takes the store's
:class:`~appliance.jobs.database.Database`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.jobs.database import Database

# -- intake ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """Intake of ``ae_title`` is paused since ``paused_at``, by ``paused_by``, because ``reason``."""

    ae_title: str
    paused_at: float
    paused_by: str
    reason: str


def pause_intake(db: Database, ae_title: str, by: str, reason: str = "") -> Pause:
    """Refuse new associations to ``ae_title`` from the adapters' next tick on (idempotent: a
    title already paused keeps its first pause record)."""
    with db.transaction() as tx:
        tx.execute("INSERT INTO intake_pauses (ae_title, paused_at, paused_by, reason) VALUES (?, ?, ?, ?)"
                   " ON CONFLICT (ae_title) DO NOTHING", (ae_title, time.time(), by, reason))
    return paused_titles(db)[ae_title]


def resume_intake(db: Database, ae_title: str) -> bool:
    """Accept ``ae_title``'s associations again; return whether it was paused."""
    with db.transaction() as tx:
        return tx.execute("DELETE FROM intake_pauses WHERE ae_title = ?", (ae_title,)).rowcount > 0


def paused_titles(db: Database) -> dict[str, Pause]:
    """Paused AE titles and their pause records."""
    return {r[0]: Pause(*r) for r in db.read("SELECT ae_title, paused_at, paused_by, reason FROM intake_pauses")}


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


class ServiceHeartbeat:
    """Writes ``name``'s heartbeat on this host with ``status()`` when :meth:`tick` is called and
    one is due (every ``interval`` seconds). ``db`` is the job store's database or what returns it
    (a service that opens its store at first use). A store error is swallowed: the next tick tries
    again, and the dashboard shows the gap."""

    def __init__(self, db: Database | Callable[[], Database], name: str,
                 status: Callable[[], dict[str, Any]], interval: float = HEARTBEAT_SECONDS) -> None:
        self._db_of = db if not isinstance(db, Database) else lambda: db
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
            with self._db_of().transaction() as tx:
                tx.execute("INSERT INTO services (name, host, pid, started_at, beat_at, status)"
                           " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, host) DO UPDATE SET pid = excluded.pid,"
                           " started_at = excluded.started_at, beat_at = excluded.beat_at, status = excluded.status",
                           (self._name, socket.gethostname(), os.getpid(), self._started, time.time(), report))
        except Exception:  # noqa: BLE001 - a heartbeat must never stop the service it reports on
            return

    def stopped(self) -> None:
        """Record a clean stop (the dashboard then shows it stopped, not dead)."""
        try:
            with self._db_of().transaction() as tx:
                tx.execute("UPDATE services SET beat_at = 0, status = ? WHERE name = ? AND host = ?",
                           (json.dumps({"stopped_at": time.time()}), self._name, socket.gethostname()))
        except Exception:  # noqa: BLE001
            return


def services(db: Database) -> list[ServiceStatus]:
    """Every service's last heartbeat, by name and host."""
    found = db.read("SELECT name, host, pid, started_at, beat_at, status FROM services ORDER BY name, host")
    return [ServiceStatus(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in found]


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


def audit(db: Database, entry: AuditEntry) -> None:
    """Append ``entry`` to the audit log."""
    with db.transaction() as tx:
        tx.execute("INSERT INTO audit (at, username, role, action, target, outcome, detail)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (entry.at, entry.user, entry.role, entry.action, entry.target, entry.outcome, entry.detail))


def audit_log(db: Database, target: str | None = None, limit: int = 500) -> list[AuditEntry]:
    """The newest ``limit`` entries, newest first, optionally only those about ``target``."""
    sql = "SELECT at, username, role, action, target, outcome, detail FROM audit"
    args: list[Any] = []
    if target is not None:
        sql += " WHERE target = ?"
        args.append(target)
    found = db.read(sql + " ORDER BY at DESC, {rowid} DESC LIMIT ?", (*args, limit))
    return [AuditEntry(*r) for r in found]
