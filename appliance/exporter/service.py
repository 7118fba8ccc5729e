"""The exporter process (``appliance exporter``): per-destination senders, their heartbeat, the watchdog.

It shares the job store with the adapters and the workers: each destination in ``dicom.scu`` gets
``dicom.scu.max-associations`` :class:`~appliance.exporter.sender.Sender` threads serving only its
own queue of export tasks, and one heartbeat thread renews the leases of the tasks being sent.
The main loop fails the tasks of destinations no longer configured, and pings systemd's watchdog
only while every sender and the heartbeat beat (a sender's deadline covers one association's
timeouts): a dead or stuck loop gets the unit restarted. A sender thread that died ends the
process with status 1.

PostgreSQL (``storage.database-url``): any number of exporters on any number of hosts share the
queues; a task whose exporter died is sent again by another once its lease expires. SQLite: one
exporter per job store (an exclusive lock, :mod:`appliance.jobs.lock`), so the tasks still being
sent at its start were left by a dead exporter and are taken up again at once.
systemd: ``READY=1`` once running; on SIGTERM the tries in progress finish, then exit 0.

Retention (``retention:``) runs here too, in a thread of its own every ``retention.interval-seconds``:
the exporter is what finishes jobs, so it is the one that knows when their results are delivered
(:mod:`appliance.jobs.retention`). Each removal is logged (job ID, reason, bytes) and kept in the
job store's ``prunes`` table.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from appliance import systemd
from appliance.exporter.sender import Sender
from appliance.jobs import ExportQueue, Heartbeat, Pruner, control, migrate, open_database, owner_id
from appliance.jobs.lock import StoreBusy, hold
from appliance.settings import AdapterConfig
from appliance.storage import PayloadLayout

LOG = logging.getLogger(__name__)

#: How often the main loop checks the other loops and pings the watchdog (seconds).
TICK_SECONDS = 0.25
#: How often tasks of destinations that are not configured are failed (seconds).
SWEEP_SECONDS = 5.0
#: How long a stopping exporter waits for the retention run in progress (seconds).
RETENTION_STOP_SECONDS = 10.0


class Exporter:
    """Everything ``appliance exporter`` runs, wired from one :class:`AdapterConfig`."""

    def __init__(self, config: AdapterConfig, poll_seconds: float = 0.2) -> None:
        self.config = config
        self.db = open_database(config.storage.job_store)
        lease = config.storage.lease_seconds
        self.queue = ExportQueue(self.db, owner_id(), lease)
        self.liveness = systemd.Liveness()
        beat_pulse = self.liveness.pulse("heartbeat", lease)
        self.heartbeat: Heartbeat[tuple[str, str]] = Heartbeat(self.queue.renew, lease / 3, on_beat=beat_pulse.beat)
        self._stop = threading.Event()
        scu = config.dicom.scu
        layout = PayloadLayout(config.storage.root)
        self.senders = [
            Sender(d, self.queue, self.heartbeat, layout, config.export, scu.ae_title,
                   self.liveness.pulse(f"sender {d.name} #{n}", max(30.0, 10 * poll_seconds)), self._stop,
                   poll_seconds)
            for d in scu.destinations for n in range(1, scu.max_associations + 1)
        ]
        self._threads = [threading.Thread(target=s.run, name=f"export-{s.destination.name}", daemon=True)
                         for s in self.senders]
        self.status_beat = control.ServiceHeartbeat(self.db, "exporter", lambda: {
            "loop_alive": all(t.is_alive() for t in self._threads) and self.heartbeat.alive,
            "destinations": [d.name for d in scu.destinations], "owner": self.queue.owner})
        self.pruner = Pruner(self.db, layout, config.retention.policy, stale_seconds=max(600.0, 4 * lease))
        self._retention = threading.Thread(target=self._prune_loop, name="retention", daemon=True)

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self) -> int:
        """Serve until :meth:`request_stop`; return the exit status (1: another exporter runs on
        this SQLite job store, or a sender died)."""
        lock = None
        try:
            migrate(self.db)
            if not self.db.shared:
                lock = hold(self.config.storage.database, "exporter")
                for job_id, name in self.queue.expire_all():
                    LOG.warning("job %s -> %s: export interrupted by a restart; sending again", job_id, name)
        except StoreBusy as exc:
            LOG.error("%s", exc)
            self.db.close()
            return 1
        self.heartbeat.start()
        for thread in self._threads:
            thread.start()
        if self.pruner.policy.active:
            self._retention.start()
            LOG.info("retention: %s; every %g s", self.pruner.policy.describe(),
                     self.config.retention.interval_seconds)
        destinations = ", ".join(d.name for d in self.config.dicom.scu.destinations) or "none"
        systemd.notify(f"READY=1\nSTATUS=exporting to {destinations}")
        LOG.info("exporter %s ready: destinations %s, job store %s", self.queue.owner, destinations, self.db.where)
        watchdog = systemd.Watchdog()
        status = 0
        next_sweep = 0.0
        try:
            while not self._stop.wait(TICK_SECONDS):
                if not all(t.is_alive() for t in self._threads) or not self.heartbeat.alive:
                    LOG.error("an export loop died; exiting so that systemd restarts the exporter")
                    status = 1
                    break
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_SECONDS
                    self._sweep()
                self.status_beat.tick()
                watchdog.tick(self.liveness)
        finally:
            systemd.notify("STOPPING=1")
            self.status_beat.stopped()
            self._stop.set()
            for thread in self._threads:
                thread.join(self.config.export.timeout_seconds * 2 + 5)
            if self._retention.is_alive():
                # A removal cut short here is finished by the next exporter (appliance.jobs.retention).
                self._retention.join(RETENTION_STOP_SECONDS)
            self.heartbeat.stop()
            self.db.close()
            if lock is not None:
                os.close(lock)
            LOG.info("stopped")
        return status

    def _prune_loop(self) -> None:
        # Its own thread: deleting a large folder must not hold up the watchdog's pings. An error
        # (store unreachable, a folder that cannot be removed) is logged and tried at the next run.
        wait = 0.0  # the first run at start
        while not self._stop.wait(wait):
            wait = self.config.retention.interval_seconds
            try:
                self.pruner.run()
            except Exception:
                LOG.exception("retention: this run stopped early; trying again in %g s",
                              self.config.retention.interval_seconds)

    def _sweep(self) -> None:
        try:
            for task in self.queue.fail_unknown([d.name for d in self.config.dicom.scu.destinations]):
                LOG.error("job %s: destination %s is not in dicom.scu; its export failed", task.job_id,
                          task.destination)
        except Exception:
            LOG.exception("exporter: job store unavailable")
