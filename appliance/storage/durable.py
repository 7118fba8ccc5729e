"""Durable file writes: the bytes are on stable storage before the caller acknowledges anything.

A file is written under a hidden temporary name, flushed with ``fdatasync``, renamed to its
final name and its folder ``fsync``-ed, so a reader (or a restart after a crash) sees either
the complete file or nothing. ``fdatasync`` rather than ``fsync``: it skips timestamps, which
the rename's directory sync does not need; measured ~1.5 ms per 0.5 MB file on the CI disk.

:class:`DurableFile` takes the bytes piece by piece, as they arrive from the network, so a
receiver never holds a whole file in memory.
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


class DurableFile:
    """A file written piece by piece under a hidden temporary name in ``folder``.

    :meth:`commit` makes it durable under ``name`` (fdatasync, rename, folder fsync); until
    then nothing under ``name`` exists. :meth:`discard` removes it. Both close it; raising
    OSError (ENOSPC, EIO, ...) from :meth:`write` or :meth:`commit` leaves no file behind.
    """

    def __init__(self, folder: Path | str, name: str) -> None:
        # Plain strings, not Path arithmetic: pathlib cost ~10 % of the CPU per instance.
        self._folder = os.fspath(folder)
        self._name = name
        self._temp = f"{self._folder}/{TEMP_PREFIX}{secrets.token_hex(6)}-{name}"
        self._fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        self.size = 0  #: bytes written so far

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append ``chunk`` (not yet durable); on OSError the file is discarded."""
        view = memoryview(chunk)
        try:
            # os.write may write less than asked (signals, nearly-full disks): loop.
            while view:
                n = os.write(self._fd, view)
                self.size += n
                view = view[n:]
        except BaseException:
            self.discard()
            raise

    def commit(self) -> int:
        """Flush, rename to the final name and sync the folder; return the byte count."""
        try:
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.rename(self._temp, f"{self._folder}/{self._name}")
        except BaseException:
            self.discard()
            raise
        fsync_dir(self._folder)
        return self.size

    def discard(self) -> None:
        """Close and delete the temporary file (idempotent; never raises for a missing file)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)


def write_durably(folder: Path | str, name: str, chunks: Sequence[bytes | memoryview]) -> int:
    """Write ``chunks`` as ``folder/name`` atomically and durably; return the byte count.

    Raises OSError (ENOSPC, EIO, ...) with no file left behind under either name.
    """
    target = DurableFile(folder, name)
    for chunk in chunks:
        target.write(chunk)
    return target.commit()


def remove_temporaries(folder: Path) -> int:
    """Delete half-written files a crash left in ``folder``; return how many there were."""
    count = 0
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(TEMP_PREFIX):
                entry.unlink(missing_ok=True)
                count += 1
    return count
