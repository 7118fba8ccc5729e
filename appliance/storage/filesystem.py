"""Which filesystem a path is on, and whether it is a network one.

The payload spool may be shared by several hosts over NFS (its durable-write order, temp file,
fsync, rename, folder fsync, holds there too), but a SQLite job store must not be: SQLite's
locking and WAL rely on shared memory and POSIX locks that network filesystems do not give
reliably, and a WAL on NFS gets corrupted. The settings refuse it (:mod:`appliance.settings`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Filesystem types (as in /proc/self/mountinfo) whose data lives on another machine.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre", "gpfs",
    "beegfs", "orangefs", "davfs", "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs", "fuse.s3fs", "fuse.rclone",
    "fuse.gcsfuse", "fuse.juicefs",
})


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo: where, what type, from where."""

    point: Path
    fstype: str
    source: str

    @property
    def network(self) -> bool:
        """Whether its data is on another machine."""
        return self.fstype in NETWORK_FILESYSTEMS


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as octal escapes (\040 ...).
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a ``/proc/<pid>/mountinfo`` text, in its order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if dash < 5 or len(fields) < dash + 3:
            continue
        mounts.append(Mount(Path(_unescape(fields[4])), fields[dash + 1], _unescape(fields[dash + 2])))
    return mounts


def existing_ancestor(path: Path) -> Path:
    """``path`` resolved, or its nearest ancestor that exists (a folder not made yet is on that one)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path.resolve()


def mount_of(path: Path, mountinfo: str | None = None) -> Mount | None:
    """The mount ``path`` is on (the last-mounted of the longest matching mount points), from this
    process's mountinfo, or from ``mountinfo`` (another host's text: then ``path`` is taken as written)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
        target = existing_ancestor(path)
    else:
        target = Path(os.path.abspath(path))
    best: Mount | None = None
    for mount in parse_mountinfo(mountinfo):
        if (target == mount.point or mount.point in target.parents) and (
                best is None or len(mount.point.parts) >= len(best.point.parts)):
            best = mount
    return best
