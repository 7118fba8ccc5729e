"""Loop device nodes for the test hosts.

A privileged container sees the host's ``/dev/loop*`` nodes that exist when it starts, and no
node created later. Hosts (and scenarios running side by side) that mount disk images need more
than the 8 a machine usually starts with, so the nodes are created up front; the kernel attaches
devices to them on demand.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

LOOP_MAJOR = 7


def ensure_nodes(count: int = 32, dev: Path = Path("/dev")) -> int:
    """Create missing ``loop0``..``loop<count-1>`` block nodes (root only); return how many were made."""
    if os.geteuid() != 0:
        return 0
    made = 0
    for minor in range(count):
        node = dev / f"loop{minor}"
        if not node.exists():
            os.mknod(node, 0o660 | stat.S_IFBLK, os.makedev(LOOP_MAJOR, minor))
            made += 1
    return made
