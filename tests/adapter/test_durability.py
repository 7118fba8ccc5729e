"""Durability: a crash mid-study loses nothing acknowledged; a full disk acknowledges nothing falsely."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pydicom
from adapterkit import Adapter, wait_for
from ctseries import Series, write_series
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]


def _send(port: int, series: Series, acked: list[str], statuses: list[int], stop: threading.Event) -> None:
    """C-STORE each file in order, recording what the adapter acknowledged with success."""
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="OrganSeg")
    if not assoc.is_established:
        return
    try:
        for uid, path in zip(series.sop_uids, series.files, strict=True):
            if stop.is_set():
                break
            status = assoc.send_c_store(path)
            code = getattr(status, "Status", None)
            if code is None:
                break  # connection gone
            statuses.append(int(code))
            if code == 0x0000:
                acked.append(uid)
    finally:
        if assoc.is_established:
            assoc.release()


def _no_temporaries(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_kill_9_while_streaming_loses_no_acknowledged_instance(
    adapter_factory: Callable[..., Adapter], tmp_path: Path
) -> None:
    a = adapter_factory().start()
    series = write_series(tmp_path / "s", 60, rows=256, cols=256)
    acked: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()
    sender = threading.Thread(target=_send, args=(a.port, series, acked, statuses, stop))
    sender.start()
    try:
        wait_for(lambda: len(acked) >= 15, 30, "15 acknowledged instances")
        a.kill()
    finally:
        stop.set()
        sender.join(30)
    assert 15 <= len(acked) < 60, "the crash must happen mid-study"
    jobs_dirs = [p for p in a.root.iterdir() if p.is_dir()]
    assert len(jobs_dirs) == 1
    on_disk = {p.stem for p in (jobs_dirs[0] / "input").glob("*.dcm")}
    assert set(acked) <= on_disk  # before any recovery: acknowledged means on disk

    a.start()
    (job,) = a.wait_jobs("ready", 1)
    assert job["id"] == jobs_dirs[0].name
    files = sorted((a.root / job["id"] / "input").iterdir())
    assert set(acked) <= {p.stem for p in files}
    assert job["instance_count"] == len(files)
    _no_temporaries(a.root)
    for path in files:  # every visible file is complete
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == series.study_uid and len(ds.PixelData) == 256 * 256 * 2


def test_full_disk_answers_out_of_resources_never_false_success(
    adapter_factory: Callable[..., Adapter], tiny_filesystem: Path, tmp_path: Path
) -> None:
    a = adapter_factory(**{"storage.root": str(tiny_filesystem / "payloads"),
                           "storage.database": str(tmp_path / "jobs.sqlite3")}).start()
    # 60 x 0.5 MiB = 30 MiB into a 24 MiB filesystem.
    series = write_series(tmp_path / "s", 60)
    acked: list[str] = []
    statuses: list[int] = []
    _send(a.port, series, acked, statuses, threading.Event())
    assert len(statuses) == 60, "the adapter must answer every request, not drop the association"
    failures = [s for s in statuses if s != 0x0000]
    assert failures and set(failures) == {0xA700}
    (job,) = a.wait_jobs("ready", 1)
    files = sorted((a.root / job["id"] / "input").glob("*.dcm"))
    assert {p.stem for p in files} == set(acked)
    assert job["instance_count"] == len(acked)
    _no_temporaries(a.root)
    for path in files:
        assert len(pydicom.dcmread(path).PixelData) == 512 * 512 * 2
    assert "not stored" in a.log()
