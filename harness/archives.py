"""Extracting tarballs of fetched test data and bundles, with tarfile's ``data`` filter or its equivalent."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from pathlib import Path


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def extract(tar: tarfile.TarFile, dest: Path, members: Sequence[tarfile.TarInfo] | None = None) -> None:
    """Extract *members* (default: all) of *tar* into *dest*, refusing what could land outside it.

    Uses tarfile's ``data`` filter where Python has it (3.11.4 and later). Debian 12's Python 3.11.2
    does not, and a bare machine's python3 may be that one: there the same refusals are made here
    (absolute names made relative; only files, folders and links that stay inside *dest*; no device files; no owners or
    set-id bits from the archive).

    Raises:
        tarfile.TarError: a member would be written or point outside *dest*, or is not a file,
            folder or link.
    """
    chosen = list(members) if members is not None else tar.getmembers()
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=chosen, filter="data")
        return
    root = os.path.realpath(dest)
    for member in chosen:
        member.name = member.name.lstrip("/")  # as the data filter: an absolute name lands inside dest
        target = os.path.realpath(os.path.join(root, member.name))
        if not _inside(root, target):
            raise tarfile.TarError(f"{member.name}: would be written outside {dest}")
        if member.issym() or member.islnk():
            base = os.path.dirname(target) if member.issym() else root
            pointed = os.path.normpath(os.path.join(base, member.linkname))
            if os.path.isabs(member.linkname) or not _inside(root, pointed):
                raise tarfile.TarError(f"{member.name}: links outside {dest} ({member.linkname})")
        elif not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"{member.name}: neither a file, a folder nor a link")
        member.mode &= 0o755
        member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    tar.extractall(dest, members=chosen)
