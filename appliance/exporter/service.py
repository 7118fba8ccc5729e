"""The exporter process (``appliance exporter``): the export loop, systemd notifications, clean shutdown.

It shares the job store with the adapter and the worker: jobs the worker moved to ``exporting``
are sent by :class:`~appliance.exporter.worker.ExportWorker`. One exporter per job store (an
exclusive lock, :mod:`appliance.jobs.lock`), so that the jobs still ``sending`` at its start are
known to be left by a dead exporter and can be sent again. systemd: ``READY=1`` once exports a
previous run left half-done are requeued, ``WATCHDOG=1`` only while the export loop is alive (a
dead loop gets the unit restarted), and on SIGTERM the try in progress finishes, then exit 0.
"""

from __future__ import annotations

import logging
import os
import threading

from appliance import systemd
from appliance.exporter.worker import ExportWorker
from appliance.jobs import JobStore, control
from appliance.jobs.lock import StoreBusy, hold
from appliance.settings import AdapterConfig
from appliance.storage import PayloadLayout

LOG = logging.getLogger(__name__)

#: How often the main loop checks the export loop and pings the watchdog (seconds).
TICK_SECONDS = 0.25


class Exporter:
    """Everything ``appliance exporter`` runs, wired from one :class:`AdapterConfig`."""

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config
        self.store = JobStore(config.storage.database)
        self.worker = ExportWorker(config, self.store, PayloadLayout(config.storage.root))
        self.heartbeat = control.Heartbeat(self.store, "exporter", lambda: {
            "loop_alive": self.worker.alive, "destinations": [d.name for d in config.dicom.scu.destinations]})
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self) -> int:
        """Serve until :meth:`request_stop`; return the exit status (1: another exporter runs, or
        the export loop died)."""
        try:
            lock = hold(self.config.storage.database, "exporter")
        except StoreBusy as exc:
            LOG.error("%s", exc)
            self.store.close()
            return 1
        self.worker.start()
        destinations = ", ".join(d.name for d in self.config.dicom.scu.destinations) or "none"
        systemd.notify(f"READY=1\nSTATUS=exporting to {destinations}")
        LOG.info("exporter ready: destinations %s, job store %s", destinations, self.config.storage.database)
        watchdog = systemd.Watchdog()
        status = 0
        try:
            while not self._stop.wait(TICK_SECONDS):
                if not self.worker.alive:
                    LOG.error("the export loop died; exiting so that systemd restarts the exporter")
                    status = 1
                    break
                self.heartbeat.tick()
                watchdog.tick()
        finally:
            systemd.notify("STOPPING=1")
            self.heartbeat.stopped()
            self.worker.stop()
            self.store.close()
            os.close(lock)
            LOG.info("stopped")
        return status
