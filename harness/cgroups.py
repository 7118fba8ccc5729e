"""Which host cgroup tree to mount into a systemd test host."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _fs_type(path: str) -> str:
    """File-system type name of *path* as ``stat -f`` reports it (e.g. ``cgroup2fs``, ``tmpfs``)."""
    out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def v2_only_source() -> str:
    """Host path to mount at /sys/fs/cgroup for releases whose systemd refuses cgroup v1.

    Ubuntu 26.04 (systemd 259) stops with "Detected unsupported legacy cgroup hierarchy" on a
    hybrid host, so there it gets the host's v2 tree (``/sys/fs/cgroup/unified``); on a unified
    host the plain ``/sys/fs/cgroup`` already is v2.
    """
    unified = Path("/sys/fs/cgroup/unified")
    if _fs_type("/sys/fs/cgroup") == "cgroup2fs" or not unified.is_dir():
        return "/sys/fs/cgroup"
    return str(unified)
