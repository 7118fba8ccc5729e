"""Bounded memory and linear work on hostile or awkward input (issue 17).

Peak RSS is the adapter's ``VmHWM`` after the transfer, with the high-water mark reset (``5`` to
``/proc/PID/clear_refs``) once the adapter has stored a small instance; the budget is
:data:`RSS_BUDGET` over the resident size at that point (docs/adapter.md, "Memory").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rawdicom
from adapterkit import Adapter, echoscu, storescu
from ctseries import Series
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]
from rawdicom import RawAssociation

RSS_BUDGET = 64 << 20  # bytes over the baseline, per docs/adapter.md
BIG = 200_000_000  # bytes of pixel data in each awkward instance


def _status(adapter: Adapter, key: str) -> int:
    assert adapter.proc is not None
    for line in Path(f"/proc/{adapter.proc.pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key}")


def _reset_peak(adapter: Adapter) -> int:
    """Reset the peak-RSS mark; return the resident size now (bytes)."""
    assert adapter.proc is not None
    try:
        Path(f"/proc/{adapter.proc.pid}/clear_refs").write_text("5")
    except OSError as exc:
        pytest.skip(f"cannot reset the peak RSS mark: {exc}")
    return _status(adapter, "VmRSS")


def _warm(adapter: Adapter, series: Series) -> int:
    assert storescu(adapter.port, series.files[:1]).returncode == 0
    return _reset_peak(adapter)


def _file(path: Path, chunks: Iterator[bytes], sop_uid: str) -> Path:
    """A Part 10 file (explicit VR LE) written from ``chunks``, for pynetdicom's own SCU."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta)
    with path.open("wb") as f:
        f.write(b"\0" * 128 + b"DICM" + fp.getvalue())
        for chunk in chunks:
            f.write(chunk)
    return path


AWKWARD = {
    # kind: (transfer syntax, dataset_head keywords, C-STORE priority)
    "sequence-first": (rawdicom.EXPLICIT_LE, {"sequence_first": True}, 0),
    "big-endian": (rawdicom.EXPLICIT_BE, {}, 0),
    "no-priority": (rawdicom.EXPLICIT_LE, {}, None),
    "large-element-first": (rawdicom.EXPLICIT_LE, {"private_bytes": 8 << 20}, 0),
    "implicit": (rawdicom.IMPLICIT_LE, {"sequence_first": True}, 0),
}


@pytest.mark.parametrize("kind", [*AWKWARD, "pynetdicom-scu"])
def test_a_200_mb_awkward_instance_stays_within_the_memory_budget(
        adapter_factory: Callable[..., Adapter], series: Series, tmp_path: Path, kind: str) -> None:
    a = adapter_factory().start()
    baseline = _warm(a, series)
    study = "1.2.826.0.1.3680043.10.511.98.1"
    uid = f"{study}.1"
    if kind == "pynetdicom-scu":
        path = _file(tmp_path / "big.dcm", iter([rawdicom.dataset_head(study, uid), *rawdicom.pixel_data(BIG)]), uid)
        ae = AE(ae_title="PYNETDICOM")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        ae.dimse_timeout = 120
        assoc = ae.associate("127.0.0.1", a.port, ae_title="OrganSeg")
        assert assoc.is_established
        status = int(assoc.send_c_store(path).Status)
        assoc.release()
        path.unlink()
    else:
        syntax, head_options, priority = AWKWARD[kind]
        assoc_raw = RawAssociation.open(a.port, syntax=syntax, timeout=120)
        head = rawdicom.dataset_head(study, uid, syntax=syntax, **head_options)  # type: ignore[arg-type]
        status = assoc_raw.store(uid, [head, *rawdicom.pixel_data(BIG, syntax)], priority=priority)
        assoc_raw.release()
    peak = _status(a, "VmHWM") - baseline
    assert status == 0x0000
    (stored,) = a.root.glob(f"*/input/{uid}.dcm")
    assert stored.stat().st_size > BIG
    assert peak < RSS_BUDGET, f"{kind}: peak RSS {peak / 2**20:.0f} MiB over the baseline"


def test_a_command_set_that_never_ends_is_cut_off(adapter: Adapter, series: Series) -> None:
    baseline = _warm(adapter, series)
    assoc = RawAssociation.open(adapter.port)
    cx = assoc.contexts[rawdicom.CT_IMAGE_STORAGE]
    fragment = rawdicom.pdu((cx, rawdicom.COMMAND, b"\0" * 60000))  # command, never the last fragment
    sent = 0
    try:
        while sent < 500 << 20:
            assoc.sock.sendall(fragment)
            sent += len(fragment)
    except OSError:
        pass  # the adapter hung up: what should happen
    assert sent < 500 << 20, "500 MB of one command set were read"
    assert rawdicom.closed_by_peer(assoc.sock, 10)
    assert _status(adapter, "VmHWM") - baseline < RSS_BUDGET
    assert "command set" in adapter.log()
    assert echoscu(adapter.port).returncode == 0


def test_identification_is_linear_in_the_bytes_received(adapter: Adapter) -> None:
    # 960 KB of small elements before the StudyInstanceUID, sent in 1 KB fragments: the walk
    # from the start of the data at each fragment took 26.7 s; a linear one takes well under 1 s.
    # The bound is an order-of-magnitude check, not a benchmark.
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = Dataset()
    for n in range(40000):  # (0009,xxxx) private elements of 16 bytes each: 24 bytes encoded
        ds.add_new(0x00091000 + n % 0x1000 + (n // 0x1000) * 0x10000, "LO", "x" * 16)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    study = "1.2.826.0.1.3680043.10.511.98.2"
    uid = f"{study}.1"
    head = fp.getvalue() + rawdicom.dataset_head(study, uid) + b"".join(rawdicom.pixel_data(1000))
    assoc = RawAssociation.open(adapter.port, timeout=120)
    cx = assoc.contexts[rawdicom.CT_IMAGE_STORAGE]
    started = time.monotonic()
    assoc.sock.sendall(rawdicom.pdu((cx, rawdicom.COMMAND | rawdicom.LAST, rawdicom.store_rq(uid))))
    pieces = list(rawdicom.chunks_of(head, 1024))
    for piece in pieces[:-1]:
        assoc.sock.sendall(rawdicom.pdu((cx, 0, piece)))
    assoc.sock.sendall(rawdicom.pdu((cx, rawdicom.LAST, pieces[-1])))
    assert assoc.status() == 0x0000
    elapsed = time.monotonic() - started
    assoc.release()
    assert elapsed < 5, f"{len(head)} bytes in 1 KB fragments took {elapsed:.1f} s"
