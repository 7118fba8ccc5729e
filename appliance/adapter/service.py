"""The adapter process: SCP, grouping ticks, systemd notifications, clean shutdown."""

from __future__ import annotations

import logging
import threading

from appliance import systemd
from appliance.adapter.grouping import Grouper
from appliance.adapter.scp import StorageSCP
from appliance.jobs import JobStore
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
        self.scp = StorageSCP(config.dicom.scp, self.grouper)
        self._stop = threading.Event()

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
        self.scp.start()
        systemd.notify(f"READY=1\nSTATUS=listening on port {self.scp.port}")
        watchdog = systemd.Watchdog()
        try:
            while not self._stop.wait(self.tick_seconds):
                self.grouper.tick()
                watchdog.tick()
        finally:
            systemd.notify("STOPPING=1")
            LOG.info("stopping")
            self.scp.stop()
            # Save progress of open groups; they stay 'receiving' and resume at the next start.
            self.grouper.tick()
            self.store.close()
            LOG.info("stopped")
        return 0
