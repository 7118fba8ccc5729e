"""Talking to systemd without a dependency: sd_notify datagrams, the watchdog, stop signals.

Shared by the appliance's long-running processes (``appliance adapter``, ``worker``, ``exporter``).
Notifications do nothing when ``$NOTIFY_SOCKET`` is unset (not run by systemd with ``Type=notify``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

LOG = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd; return whether it was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    # A leading '@' names a socket in the abstract namespace, spelt with a NUL byte.
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), target)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None if not asked."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None


class Watchdog:
    """Sends ``WATCHDOG=1`` every :func:`watchdog_interval` seconds when :meth:`tick` is called
    often enough; does nothing when systemd did not ask for it (no ``WatchdogSec=``)."""

    def __init__(self) -> None:
        self.interval = watchdog_interval()
        self._next = time.monotonic()

    def tick(self) -> None:
        """Ping if a ping is due; call it from the process's main loop."""
        if self.interval is not None and time.monotonic() >= self._next:
            notify("WATCHDOG=1")
            self._next = time.monotonic() + self.interval


def on_stop_signals(request_stop: Callable[[], None]) -> None:
    """Call ``request_stop`` on SIGTERM (``systemctl stop``) and SIGINT; it must be signal-safe
    (e.g. set a :class:`threading.Event`)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        LOG.info("received %s", signal.Signals(signum).name)
        request_stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
