"""A process's leases: who it is, and the heartbeat thread that renews what it holds.

A claim (a running job, an export task) is held under a lease that lapses ``lease_seconds`` after
its last renewal. The heartbeat renews every held claim each ``lease_seconds / 3``, so two missed
renewals still leave it held; a claim found lost (its lease expired while the process stalled or
lost the database, and another process took the work over) is dropped and its ``on_lost`` called.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

LOG = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


def owner_id() -> str:
    """This process's name on its claims: ``host:pid:tag`` (the tag tells a restarted PID apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Heartbeat(Generic[K]):
    """Renews the claims :meth:`hold` registers with ``renew`` (held keys in, still-held keys
    out) every ``interval`` seconds on a daemon thread; ``on_beat`` is called after each round
    that reached the database (the process's watchdog uses it)."""

    def __init__(self, renew: Callable[[set[K]], set[K]], interval: float, name: str = "heartbeat",
                 on_beat: Callable[[], None] = lambda: None) -> None:
        self._renew = renew
        self._interval = interval
        self._on_beat = on_beat
        self._held: dict[K, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def hold(self, key: K, on_lost: Callable[[], None] = lambda: None) -> None:
        """Renew ``key`` from now on; call ``on_lost`` (on the heartbeat thread) if it is lost."""
        with self._lock:
            self._held[key] = on_lost

    def drop(self, key: K) -> None:
        """Stop renewing ``key`` (the claim ended)."""
        with self._lock:
            self._held.pop(key, None)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (within one interval)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._interval + 1)

    @property
    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def beat(self) -> None:
        """One round: renew every held claim, report the lost ones."""
        with self._lock:
            keys = set(self._held)
        held = self._renew(keys) if keys else set()
        lost = keys - held
        for key in lost:
            with self._lock:
                on_lost = self._held.pop(key, None)
            if on_lost is not None:
                LOG.error("lost the claim on %s (its lease expired); another process may take it over", key)
                on_lost()
        self._on_beat()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.beat()
            except Exception:  # the database may come back before the leases lapse
                LOG.exception("could not renew leases")
