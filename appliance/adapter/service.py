"""The adapter process: SCP, grouping ticks, systemd notifications, clean shutdown."""

from __future__ import annotations

import logging
import socket
import threading

from appliance import systemd
from appliance.adapter.grouping import Grouper
from appliance.adapter.scp import Receiver, StorageSCP
from appliance.jobs import Database, Intake, control, migrate, open_database
from appliance.settings import AdapterConfig
from appliance.storage import PayloadLayout, make_dirs

LOG = logging.getLogger(__name__)


class Adapter:
    """Everything ``appliance adapter`` runs, wired from one :class:`AdapterConfig`.

    ``receiver``: see :class:`StorageSCP` (benchmarks only).
    """

    def __init__(self, config: AdapterConfig, receiver: Receiver | None = None) -> None:
        self.config = config
        self.layout = PayloadLayout(config.storage.root)
        make_dirs(config.storage.root)
        # Opened at first use, so that a locked or full job store at start is a fault the adapter
        # rides out (C-STORE answers 0xA700 meanwhile), not a crash loop.
        self.grouper = Grouper(self._open_intake, self.layout, config.dicom.scp.ae_title,
                               config.completion.quiet_seconds)
        self._paused: frozenset[str] = frozenset()
        self.scp = StorageSCP(config.dicom.scp, self.grouper, spill_dir=str(config.storage.root),
                              receiver=receiver, paused=lambda: self._paused)
        self._control_store: Database | None = None
        self.status_beat = control.ServiceHeartbeat(self._control_db, "adapter", self._status)
        self._stop = threading.Event()
        self._control = threading.Thread(target=self._control_loop, name="adapter-control", daemon=True)

    def _status(self) -> dict[str, object]:
        return {"associations": self.scp.open_associations(), "receiving": self.grouper.open_groups(),
                "paused": sorted(self._paused), "port": self.scp.port}

    def _control_db(self) -> Database:
        # A connection of its own: a lock wait of the control thread never delays the grouper's.
        if self._control_store is None:
            self._control_store = open_database(self.config.storage.job_store)
        return self._control_store

    def _refresh_paused(self) -> None:
        try:
            self._paused = frozenset(control.paused_titles(self._control_db()))
        except Exception:  # the store is busy or unavailable: keep the last known pauses
            LOG.debug("could not read intake pauses", exc_info=True)

    def _control_loop(self) -> None:
        # The intake pauses (read every tick, so a pause applies to the next association within
        # tick_seconds) and the heartbeat, on a thread of their own: a locked or slow job store
        # then holds up neither the start nor the main loop's grouping ticks and watchdog.
        while True:
            self._refresh_paused()
            self.status_beat.tick()
            if self._stop.wait(self.tick_seconds):
                return

    def _open_intake(self) -> Intake:
        """Open and migrate the job store (StoreError while it cannot be)."""
        db = open_database(self.config.storage.job_store)
        try:
            migrate(db)
        except BaseException:
            db.close()
            raise
        # Its name on the jobs it receives: the same after a restart, different for each adapter of a fleet.
        return Intake(db, owner=f"{socket.gethostname()}:{self.config.dicom.scp.port}")

    @property
    def tick_seconds(self) -> float:
        """How often groups are checked: a quarter of the quiet window, at most 0.25 s."""
        return min(0.25, self.config.completion.quiet_seconds / 4)

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self) -> int:
        """Serve until :meth:`request_stop` (SIGTERM/SIGINT in the CLI); return the exit status.

        No fault while serving ends it: a failing grouping tick (the job store locked, the disk
        full) is logged and tried again at the next tick. The
        systemd watchdog is pinged only while the main loop turns and the SCP's accept and gate
        loops do, so a stuck process is restarted by systemd.
        """
        # The previous run's open groups are resumed by the first tick (or the first C-STORE,
        # whichever comes first); until then nothing is stored, and a store that cannot be opened
        # yet delays that, not the start.
        self.scp.start()
        self._control.start()
        systemd.notify(f"READY=1\nSTATUS=listening on port {self.scp.port}")
        watchdog = systemd.Watchdog()
        stuck = False
        try:
            while not self._stop.wait(self.tick_seconds):
                try:
                    self.grouper.tick()
                except Exception:  # a bug, not a fault: log it, keep serving
                    LOG.exception("grouping tick failed")
                if self.scp.healthy():
                    watchdog.tick()
                    stuck = False
                elif not stuck:
                    LOG.error("the SCP's accept or gate loop is stuck; the watchdog will restart the service")
                    stuck = True
        finally:
            systemd.notify("STOPPING=1")
            LOG.info("stopping")
            self.scp.stop()
            self._control.join(timeout=15)  # at most one store wait
            self.status_beat.stopped()
            if self._control_store is not None:
                self._control_store.close()
            # Save progress of open groups; they stay 'receiving' and resume at the next start.
            self.grouper.tick()
            self.grouper.close()
            LOG.info("stopped")
        return 0
