"""The dashboard process (``appliance dashboard``): uvicorn serving :func:`~appliance.dashboard.app.create_app`.

HTTPS when ``dashboard.tls-certificate`` and ``tls-key`` are set (HTTP otherwise, for a listener
on loopback behind a proxy, or tests). systemd: ``READY=1`` once the socket listens, ``WATCHDOG=1``
while the server runs, and on SIGTERM open requests get a few seconds, then exit 0.
"""

from __future__ import annotations

import logging
import threading

import uvicorn

from appliance import systemd
from appliance.dashboard.app import create_app
from appliance.settings import AdapterConfig

LOG = logging.getLogger(__name__)


class Dashboard:
    """Everything ``appliance dashboard`` runs, wired from one :class:`AdapterConfig`."""

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config
        settings = config.dashboard
        tls = settings.tls_certificate is not None
        self.server = uvicorn.Server(uvicorn.Config(
            create_app(config), host=settings.bind_address, port=settings.port,
            ssl_certfile=str(settings.tls_certificate) if tls else None,
            ssl_keyfile=str(settings.tls_key) if tls else None,
            log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=3,
            proxy_headers=False, server_header=False))
        self.scheme = "https" if tls else "http"
        self._done = threading.Event()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from signal handlers and other threads)."""
        self.server.should_exit = True

    def _notify(self) -> None:
        watchdog = systemd.Watchdog()
        while not self.server.started and not self._done.wait(0.05):
            pass
        if self.server.started:
            where = f"{self.scheme}://{self.config.dashboard.bind_address}:{self.config.dashboard.port}"
            LOG.info("dashboard listening on %s", where)
            systemd.notify(f"READY=1\nSTATUS=serving {where}")
        while not self._done.wait(0.5):
            watchdog.tick()

    def run(self) -> int:
        """Serve until :meth:`request_stop`; return the exit status (1: it could not listen)."""
        notifier = threading.Thread(target=self._notify, name="systemd-notify", daemon=True)
        notifier.start()
        try:
            self.server.run()
        finally:
            self._done.set()
            systemd.notify("STOPPING=1")
        if not self.server.started:
            LOG.error("the dashboard could not start (see above)")
            return 1
        LOG.info("stopped")
        return 0
