"""Data integrity on odd input (issue 17): UIDs checked whole, duplicates by policy, truncation refused."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest
import rawdicom
from adapterkit import Adapter
from rawdicom import RawAssociation

STUDY = "1.2.826.0.1.3680043.10.511.97"


def _instance(sop_uid: str, study_uid: str = STUDY, pixels: int = 2000, **head: object) -> bytes:
    return rawdicom.dataset_head(study_uid, sop_uid, **head) + b"".join(rawdicom.pixel_data(pixels))  # type: ignore[arg-type]


def _files(adapter: Adapter) -> list[Path]:
    return sorted(p for p in adapter.root.rglob("*") if p.is_file() and p.suffix != ".sqlite3"
                  and "jobs.sqlite3" not in p.name)


def test_a_uid_with_a_trailing_newline_is_refused(adapter: Adapter) -> None:
    assoc = RawAssociation.open(adapter.port)
    # In the StudyInstanceUID: the dataset names no valid study.
    good = f"{STUDY}.1"
    assert assoc.store(good, rawdicom.dataset_head(STUDY, good, study_uid_raw=STUDY.encode() + b"\n")) == 0xA900
    # In the command's Affected SOP Instance UID, which becomes a file name.
    assert assoc.store(f"{STUDY}.2\n", _instance(f"{STUDY}.2")) == 0xC000
    assoc.release()
    assert _files(adapter) == []
    assert adapter.jobs() == []


def test_a_duplicate_keeps_the_first_and_is_logged(adapter: Adapter) -> None:
    uid = f"{STUDY}.3"
    first = _instance(uid)
    second = first.replace(b"RAW", b"DUP")  # same SOP Instance UID, other content
    assert first != second
    assoc = RawAssociation.open(adapter.port)
    assert assoc.store(uid, first) == 0x0000
    assert assoc.store(uid, second) == 0x0000  # the default policy: keep the first, say so
    assoc.release()
    (job,) = adapter.wait_jobs("ready", 1)
    assert job["instance_count"] == 1
    (stored,) = adapter.root.glob(f"*/input/{uid}.dcm")
    assert stored.read_bytes().endswith(first)
    assert "duplicate" in adapter.log()


def test_simultaneous_duplicates_keep_exactly_one(adapter: Adapter) -> None:
    uid = f"{STUDY}.4"
    versions = [_instance(uid, pixels=4_000_000).replace(b"RAW", tag) for tag in (b"AAA", b"BBB")]
    statuses: list[int] = []

    def send(data: bytes, source: int) -> None:
        assoc = RawAssociation.open(adapter.port, rawdicom.source_address(source))
        statuses.append(assoc.store(uid, rawdicom.chunks_of(data, 100_000)))
        assoc.release()

    threads = [threading.Thread(target=send, args=(v, n)) for n, v in enumerate(versions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [0, 0]
    (job,) = adapter.wait_jobs("ready", 1)
    assert job["instance_count"] == 1
    (stored,) = adapter.root.glob(f"*/input/{uid}.dcm")
    content = stored.read_bytes()
    assert content.endswith(versions[0]) or content.endswith(versions[1])
    assert "duplicate" in adapter.log()


def _truncated(kind: str, uid: str) -> bytes:
    whole = _instance(uid, pixels=100_000)
    if kind == "cut-in-pixel-data":
        return whole[:-5000]
    if kind == "cut-in-an-element-header":
        head = rawdicom.dataset_head(STUDY, uid)
        return head + struct.pack("<HH", 0x7FE0, 0x0010)
    if kind == "pixel-data-claims-2-GB":
        head = rawdicom.dataset_head(STUDY, uid)
        return head + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, 0x7FFFFFFE) + b"\0" * 100_000
    if kind == "cut-in-a-sequence":
        head = rawdicom.dataset_head(STUDY, uid, sequence_first=True)
        return head[:head.index(b"\xfe\xff\x0d\xe0")]  # before the item delimiter
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["cut-in-pixel-data", "cut-in-an-element-header", "pixel-data-claims-2-GB",
                                  "cut-in-a-sequence"])
def test_truncated_datasets_are_refused(adapter: Adapter, kind: str) -> None:
    uid = f"{STUDY}.5"
    assoc = RawAssociation.open(adapter.port)
    assert assoc.store(uid, _truncated(kind, uid)) in (0xA900, 0xC000)
    # The same instance, whole, is stored afterwards: nothing of the refused one is in the way.
    assert assoc.store(uid, _instance(uid)) == 0x0000
    assoc.release()
    (job,) = adapter.wait_jobs("ready", 1)
    assert job["instance_count"] == 1
    assert [p.name for p in _files(adapter)] == [f"{uid}.dcm"]
