"""One process per role on a job store: an exclusive ``flock`` on ``<database>.<role>.lock``.

The kernel releases it when the process ends, even on ``kill -9``. That is what lets a worker
treat every job still ``running`` at its start as left behind by a dead worker, and an exporter
every job still ``sending``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class StoreBusy(RuntimeError):
    """Another process of the same role holds the job store's lock."""


def lock_path(database: Path, role: str) -> Path:
    """The lock file of ``role`` (``worker``, ``exporter``) on the job store ``database``."""
    return database.with_name(f"{database.name}.{role}.lock")


def hold(database: Path, role: str) -> int:
    """Take the lock without waiting; return its descriptor (closing it releases the lock)."""
    path = lock_path(database, role)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusy(f"another appliance {role} uses this job store (lock {path} is held)") from None
    return fd
