"""Filesystem figures for a path that may not exist yet (shared by filesystem modules)."""

from __future__ import annotations

import os


def mount_point(path: str) -> str:
    """The mount point holding the existing *path*: walk up while the device stays the same."""
    path = os.path.realpath(path)
    device = os.stat(path).st_dev
    while path != "/":
        parent = os.path.dirname(path)
        if os.stat(parent).st_dev != device:
            return path
        path = parent
    return "/"


def describe(path: str) -> dict:  # type: ignore[type-arg]
    """Facts about the filesystem that holds the absolute *path* (ValueError for a relative one)."""
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    symlinks = []
    probe = path
    while probe not in ("/", ""):
        if os.path.islink(probe):
            symlinks.append(probe)
        probe = os.path.dirname(probe)
    stat = os.statvfs(existing)
    size = stat.f_blocks * stat.f_frsize
    avail = stat.f_bavail * stat.f_frsize
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    # df's Use%: used / (used + available to unprivileged users), rounded up.
    usable = used + avail
    return {
        "path": path,
        "exists": os.path.lexists(path),
        "existing_ancestor": existing,
        # Resolved on the host: a controller-side realpath filter would resolve the wrong machine.
        "real_ancestor": os.path.realpath(existing),
        "device": os.stat(existing).st_dev,
        "mount": mount_point(existing),
        "size_bytes": size,
        "used_bytes": used,
        "avail_bytes": avail,
        "used_percent": round(100.0 * used / usable, 2) if usable else 0.0,
        "symlinks": symlinks,
    }
