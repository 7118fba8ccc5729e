"""Faults never kill the adapter (issue 17): a full disk and a locked job store answer failure
statuses, C-ECHO keeps working, and storing resumes once the fault clears."""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import rawdicom
from adapterkit import Adapter, echoscu, storescu, wait_for
from ctseries import write_series
from rawdicom import RawAssociation


def _alive(adapter: Adapter) -> bool:
    return adapter.proc is not None and adapter.proc.poll() is None


def _fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to the last byte; return the filler file."""
    filler = folder / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * (256 << 10))
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        try:
            while True:  # the last, partial blocks
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass
    return filler


def test_full_disk_keeps_serving_and_resumes(adapter_factory: Callable[..., Adapter],
                                             tiny_filesystem: Path, tmp_path: Path) -> None:
    # The job store is on the full disk too: SQLite fails as well as the instance files.
    a = adapter_factory(**{"storage.root": str(tiny_filesystem / "payloads"),
                           "storage.database": str(tiny_filesystem / "jobs.sqlite3")}).start()
    first = write_series(tmp_path / "first", 6, rows=128, cols=128)
    assert storescu(a.port, first.files[:3]).returncode == 0
    filler = _fill(tiny_filesystem)
    done = storescu(a.port, first.files[3:])
    assert done.returncode != 0 or "0xa700" in (done.stdout + done.stderr).lower()
    time.sleep(3)  # several grouping ticks, with the quiet window over: the job cannot be closed
    assert _alive(a), a.log()
    assert echoscu(a.port).returncode == 0
    # A restart while the disk is still full: it starts, answers C-ECHO, refuses C-STORE.
    assert a.stop() == 0
    a.start()
    assert echoscu(a.port).returncode == 0
    assoc = RawAssociation.open(a.port)
    uid = "1.2.826.0.1.3680043.10.511.96.1"
    assert assoc.store(uid, rawdicom.dataset_head("1.2.826.0.1.3680043.10.511.96", uid)
                       + b"".join(rawdicom.pixel_data(200_000))) == 0xA700
    assoc.release()
    time.sleep(2)
    assert _alive(a), a.log()
    # The fault clears: storing resumes, the first study's job closes with what was acknowledged.
    filler.unlink()
    second = write_series(tmp_path / "second", 3, rows=128, cols=128)
    wait_for(lambda: storescu(a.port, second.files).returncode == 0, 10, "storing to resume")
    jobs = a.wait_jobs("ready", 2)
    counts = {j["study_uid"]: j["instance_count"] for j in jobs}
    assert counts[second.study_uid] == 3
    assert counts[first.study_uid] >= 3
    stored = {p.stem for p in a.root.glob("*/input/*.dcm")}
    assert set(first.sop_uids[:3]) <= stored
    assert "Traceback" not in a.log()


def _hold_lock(database: Path, seconds: float, locked: threading.Event) -> subprocess.Popen[bytes]:
    """Another process that holds an exclusive lock on the job store for ``seconds``."""
    script = ("import sqlite3, sys, time\n"
              "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
              "db.execute('BEGIN EXCLUSIVE')\n"
              "print('locked', flush=True)\n"
              "time.sleep(float(sys.argv[2]))\n"
              "db.execute('ROLLBACK')\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(database), str(seconds)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"locked"
    locked.set()
    return proc


def test_a_locked_job_store_is_survived(adapter_factory: Callable[..., Adapter], tmp_path: Path) -> None:
    # The first study's quiet window ends while the store is locked: closing its job must wait.
    a = adapter_factory(**{"completion.quiet-seconds": 3}).start()
    study = write_series(tmp_path / "a", 2, rows=64, cols=64)
    assert storescu(a.port, study.files[:1]).returncode == 0
    database = a.root / "jobs.sqlite3"
    assert database.exists()
    locker = _hold_lock(database, 25, threading.Event())  # room for a loaded machine
    try:
        # Longer than the store's 10 s busy timeout: the grouping tick that closes the job fails.
        other = write_series(tmp_path / "b", 1, rows=64, cols=64)
        assert echoscu(a.port).returncode == 0
        refused = storescu(a.port, other.files, timeout=60)
        assert refused.returncode != 0 or "0xa700" in (refused.stdout + refused.stderr).lower()
        assert _alive(a), a.log()
    finally:
        locker.wait(40)
    # Once the lock is gone: the first study's job closes, the other study is stored.
    wait_for(lambda: any(j["study_uid"] == study.study_uid for j in a.wait_jobs("ready", 1, timeout=15)),
             15, "the first study's job to close")
    assert storescu(a.port, other.files).returncode == 0
    jobs = a.wait_jobs("ready", 2, timeout=15)
    assert {j["study_uid"]: j["instance_count"] for j in jobs} == {study.study_uid: 1, other.study_uid: 1}
    assert _alive(a)
    assert "database is locked" in a.log() and "Traceback" not in a.log()


def test_a_job_store_locked_at_start_delays_only_storing(adapter_factory: Callable[..., Adapter],
                                                         tmp_path: Path) -> None:
    started = time.monotonic()
    a = adapter_factory().start()
    unlocked_start = time.monotonic() - started  # the baseline on this machine, under its load
    assert a.stop() == 0  # the store exists now
    # Held past start-up plus the store's 10 s busy timeout, with room for a loaded machine.
    locker = _hold_lock(a.root / "jobs.sqlite3", 25, threading.Event())
    try:
        started = time.monotonic()
        a.start()  # READY at once: the store is opened and the groups resumed by the first tick
        # Waiting on the lock would take the store's 10 s busy timeout at least.
        assert time.monotonic() - started < unlocked_start + 5
        assert echoscu(a.port).returncode == 0
        study = write_series(tmp_path / "a", 1, rows=64, cols=64)
        refused = storescu(a.port, study.files, timeout=60)
        assert refused.returncode != 0 or "0xa700" in (refused.stdout + refused.stderr).lower()
        assert _alive(a), a.log()
    finally:
        locker.wait(40)
    wait_for(lambda: storescu(a.port, study.files).returncode == 0, 15, "storing to resume")
    (job,) = a.wait_jobs("ready", 1)
    assert job["study_uid"] == study.study_uid
    assert "Traceback" not in a.log()
