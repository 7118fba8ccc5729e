"""Durable file writes: the bytes are on stable storage before the caller acknowledges anything.

A file is written under a hidden temporary name, flushed with ``fdatasync``, renamed to its
final name and its folder ``fsync``-ed, so a reader (or a restart after a crash) sees either
the complete file or nothing. ``fdatasync`` rather than ``fsync``: it skips timestamps, which
the rename's directory sync does not need; measured ~1.5 ms per 0.5 MB file on the CI disk.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

#: Prefix of in-flight files; nothing with it is ever a complete instance.
TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path | str) -> None:
    """Make the entries of folder ``path`` (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents, syncing each new entry into its parent."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        fsync_dir(folder.parent)


def write_durably(folder: Path, name: str, chunks: Sequence[bytes | memoryview]) -> int:
    """Write ``chunks`` as ``folder/name`` atomically and durably; return the byte count.

    Raises OSError (ENOSPC, EIO, ...) with no file left behind under either name.
    """
    # Plain strings, not Path arithmetic: pathlib cost ~10 % of the CPU per instance.
    base = os.fspath(folder)
    temp = f"{base}/{TEMP_PREFIX}{secrets.token_hex(6)}-{name}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    written = 0
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                # os.write may write less than asked (signals, nearly-full disks): loop.
                while view:
                    n = os.write(fd, view)
                    written += n
                    view = view[n:]
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.rename(temp, f"{base}/{name}")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_dir(base)
    return written


def remove_temporaries(folder: Path) -> int:
    """Delete half-written files a crash left in ``folder``; return how many there were."""
    count = 0
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(TEMP_PREFIX):
                entry.unlink(missing_ok=True)
                count += 1
    return count
