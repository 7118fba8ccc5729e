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

    def tick(self, liveness: Liveness | None = None) -> None:
        """Ping if a ping is due and no loop of ``liveness`` is overdue; call it from the
        process's main loop."""
        if self.interval is not None and time.monotonic() >= self._next:
            if liveness is not None and liveness.overdue():
                return
            notify("WATCHDOG=1")
            self._next = time.monotonic() + self.interval


class Pulse:
    """One loop's sign of life for :class:`Liveness`: the loop calls :meth:`beat` each round, with
    ``allow`` (seconds) before a call that may block that long (an association, a stage)."""

    def __init__(self, name: str, period: float) -> None:
        self.name = name
        self.period = period
        self._deadline = time.monotonic() + period

    def beat(self, allow: float | None = None) -> None:
        """Alive now, and for ``allow`` (default: the loop's ``period``) seconds more."""
        self._deadline = time.monotonic() + (self.period if allow is None else allow)

    @property
    def overdue(self) -> bool:
        """Whether the loop missed its deadline (stuck, or dead)."""
        return time.monotonic() > self._deadline


class Liveness:
    """Every loop of a process; the watchdog is pinged only while none is overdue, so systemd
    restarts a process one of whose loops died or hangs, not only one whose main thread did."""

    def __init__(self) -> None:
        self._pulses: list[Pulse] = []
        self._reported: set[str] = set()

    def pulse(self, name: str, period: float) -> Pulse:
        """Register a loop expected to beat at least every ``period`` seconds."""
        pulse = Pulse(name, period)
        self._pulses.append(pulse)
        return pulse

    def overdue(self) -> list[str]:
        """Names of the loops that missed their deadline (each logged once per stall)."""
        late = [p.name for p in self._pulses if p.overdue]
        for name in set(late) - self._reported:
            LOG.error("loop %s is overdue: withholding the watchdog ping", name)
        self._reported = set(late)
        return late


def on_stop_signals(request_stop: Callable[[], None]) -> None:
    """Call ``request_stop`` on SIGTERM (``systemctl stop``) and SIGINT; it must be signal-safe
    (e.g. set a :class:`threading.Event`)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        LOG.info("received %s", signal.Signals(signum).name)
        request_stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
