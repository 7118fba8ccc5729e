"""The adapter process: SCP, grouping ticks, systemd notifications, clean shutdown."""

from __future__ import annotations

import logging
import threading

from appliance import systemd
from appliance.adapter.grouping import Grouper
from appliance.adapter.scp import StorageSCP
from appliance.jobs import JobStore, control
from appliance.settings import AdapterConfig
from appliance.storage import PayloadLayout, make_dirs

LOG = logging.getLogger(__name__)


class Adapter:
    """Everything ``appliance adapter`` runs, wired from one :class:`AdapterConfig`."""

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config
        self.layout = PayloadLayout(config.storage.root)
        make_dirs(config.storage.root)
        self.store = JobStore(config.storage.database)
        self.grouper = Grouper(self.store, self.layout, config.dicom.scp.ae_title,
                               config.completion.quiet_seconds)
        self._paused: frozenset[str] = frozenset()
        self.scp = StorageSCP(config.dicom.scp, self.grouper, lambda: self._paused)
        self.heartbeat = control.Heartbeat(self.store, "adapter", self._status)
        self._stop = threading.Event()

    def _status(self) -> dict[str, object]:
        return {"associations": self.scp.open_associations(), "receiving": self.grouper.open_groups(),
                "paused": sorted(self._paused), "port": self.scp.port}

    def _refresh_paused(self) -> None:
        # Read every tick, so a pause applies to the next association within tick_seconds.
        try:
            self._paused = frozenset(control.paused_titles(self.store))
        except Exception:  # the store is busy or unavailable: keep the last known pauses
            LOG.debug("could not read intake pauses", exc_info=True)

    @property
    def tick_seconds(self) -> float:
        """How often groups are checked: a quarter of the quiet window, at most 0.25 s."""
        return min(0.25, self.config.completion.quiet_seconds / 4)

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self) -> int:
        """Serve until :meth:`request_stop` (SIGTERM/SIGINT in the CLI); return the exit status."""
        resumed = self.grouper.recover()
        if resumed:
            LOG.info("resumed %d receiving group(s) from the previous run", resumed)
        self._refresh_paused()
        self.scp.start()
        self.heartbeat.tick(force=True)
        systemd.notify(f"READY=1\nSTATUS=listening on port {self.scp.port}")
        watchdog = systemd.Watchdog()
        try:
            while not self._stop.wait(self.tick_seconds):
                self.grouper.tick()
                self._refresh_paused()
                self.heartbeat.tick()
                watchdog.tick()
        finally:
            systemd.notify("STOPPING=1")
            LOG.info("stopping")
            self.heartbeat.stopped()
            self.scp.stop()
            # Save progress of open groups; they stay 'receiving' and resume at the next start.
            self.grouper.tick()
            self.store.close()
            LOG.info("stopped")
        return 0
