"""IncomingInstance: a dataset fed in fragments of any size is filed exactly, or fails cleanly."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ctseries import write_series
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from appliance.adapter import instance
from appliance.adapter.grouping import Grouper
from appliance.adapter.instance import IncomingInstance
from appliance.adapter.limits import DuplicatePolicy
from appliance.jobs import Intake, JobStore
from appliance.storage import PayloadLayout, durable

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
HEADER = b"\0" * 128 + b"DICM" + b"META"  # any bytes: the header is written as given


@pytest.fixture
def grouper(tmp_path: Path) -> Iterator[Grouper]:
    store = JobStore(tmp_path / "jobs.sqlite3")
    yield Grouper(Intake(store.db), PayloadLayout(tmp_path / "payloads"), lambda _title: None, quiet_seconds=0)
    store.close()


def _dataset(tmp_path: Path) -> tuple[bytes, str]:
    """The encoded dataset (explicit VR LE) of a small CT slice and its SOP Instance UID."""
    series = write_series(tmp_path / "ct", 1, rows=32, cols=32)
    ds = dcmread(series.files[0])
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue(), series.sop_uids[0]


def _receive(grouper: Grouper, sop_uid: str, dataset: bytes, size: int) -> int:
    incoming = IncomingInstance(grouper, "OrganSeg", "SENDER", CT, sop_uid, EXPLICIT, HEADER, head_bytes=1 << 20)
    for start in range(0, len(dataset), size):
        incoming.feed(memoryview(dataset)[start:start + size])
    return incoming.finish()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("size", [1, 7, 100, 4096, 1 << 30])
def test_fragments_of_any_size_give_the_same_file(grouper: Grouper, tmp_path: Path, size: int) -> None:
    dataset, sop_uid = _dataset(tmp_path)
    assert _receive(grouper, sop_uid, dataset, size) == instance.SUCCESS
    (job,) = grouper.tick()
    (path,) = _files(tmp_path / "payloads")
    assert path.name == f"{sop_uid}.dcm" and path.parent.name == "input" and path.parent.parent.name == job.id
    assert path.read_bytes() == HEADER + dataset
    assert job.instance_count == 1


def test_failures_answer_their_status_and_leave_nothing(grouper: Grouper, tmp_path: Path) -> None:
    dataset, sop_uid = _dataset(tmp_path)
    assert _receive(grouper, "../../evil", dataset, 100) == instance.CANNOT_UNDERSTAND
    assert _receive(grouper, sop_uid, os.urandom(3000), 100) in (instance.CANNOT_UNDERSTAND,
                                                                  instance.DATASET_MISMATCH)
    no_study = Dataset()
    no_study.PatientID = "X"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, no_study)
    assert _receive(grouper, sop_uid, fp.getvalue(), 5) == instance.DATASET_MISMATCH
    assert grouper.open_groups() == 0
    assert _files(tmp_path / "payloads") == []


def test_write_error_answers_out_of_resources(grouper: Grouper, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    dataset, sop_uid = _dataset(tmp_path)
    real_write = os.write
    budget = [len(HEADER) + 500]  # the disk fills up inside the data set

    def write(fd: int, data: bytes | memoryview) -> int:
        if len(data) > budget[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        budget[0] -= len(data)
        return real_write(fd, data)

    monkeypatch.setattr(durable.os, "write", write)
    assert _receive(grouper, sop_uid, dataset, 256) == instance.OUT_OF_RESOURCES
    assert grouper.tick() == []  # nothing stored: the group is discarded, no job
    assert _files(tmp_path / "payloads") == []


def test_abort_mid_dataset_deletes_the_temporary_and_frees_the_group(grouper: Grouper, tmp_path: Path) -> None:
    dataset, sop_uid = _dataset(tmp_path)
    incoming = IncomingInstance(grouper, "OrganSeg", "SENDER", CT, sop_uid, EXPLICIT, HEADER, head_bytes=1 << 20)
    incoming.feed(dataset[:2000])
    (temporary,) = _files(tmp_path / "payloads")
    assert temporary.name.startswith(durable.TEMP_PREFIX)
    assert grouper.tick() == []  # in flight: the group stays open
    assert grouper.open_groups() == 1
    incoming.abort()
    incoming.abort()  # idempotent
    assert _files(tmp_path / "payloads") == []
    assert grouper.tick() == [] and grouper.open_groups() == 0


def test_a_study_named_late_waits_in_an_unnamed_file_then_is_stored_exactly(grouper: Grouper, tmp_path: Path) -> None:
    import rawdicom

    uid = "1.2.826.0.1.3680043.10.511.95.1"
    dataset = rawdicom.dataset_head("1.2.826.0.1.3680043.10.511.95", uid, private_bytes=50_000) + bytes(2000)
    dataset = dataset[:-2000] + b"".join(rawdicom.pixel_data(2000))
    spill = tmp_path / "spill"
    spill.mkdir()
    incoming = IncomingInstance(grouper, "OrganSeg", "SENDER", CT, uid, EXPLICIT, HEADER,
                                head_bytes=4096, spill_dir=str(spill))
    for start in range(0, 40_000, 1000):  # inside the private element: the study is not known yet
        incoming.feed(memoryview(dataset)[start:start + 1000])
        assert len(incoming._head) <= 4096
    assert _files(tmp_path / "payloads") == [] and _files(spill) == []  # the spill file has no name
    incoming.feed(memoryview(dataset)[40_000:])
    assert incoming.finish() == instance.SUCCESS
    (path,) = _files(tmp_path / "payloads")
    assert path.read_bytes() == HEADER + dataset


@pytest.mark.parametrize("policy", [DuplicatePolicy.KEEP_FIRST, DuplicatePolicy.REFUSE])
def test_a_duplicate_never_replaces_the_first(grouper: Grouper, tmp_path: Path, policy: DuplicatePolicy) -> None:
    dataset, sop_uid = _dataset(tmp_path)
    other = dataset.replace(b"PHANTOM01", b"PHANTOM02")
    first, second = (IncomingInstance(grouper, "OrganSeg", "SENDER", CT, sop_uid, EXPLICIT, HEADER, head_bytes=1 << 20,
                                            duplicates=policy)
                     for _ in range(2))
    first.feed(dataset)
    second.feed(other)  # both in flight at once; the first to finish is kept
    assert second.finish() == instance.SUCCESS
    assert first.finish() == (instance.SUCCESS if policy is DuplicatePolicy.KEEP_FIRST else instance.DUPLICATE)
    (job,) = grouper.tick()
    assert job.instance_count == 1
    (path,) = _files(tmp_path / "payloads")
    assert path.read_bytes() == HEADER + other


def test_an_image_without_pixel_data_is_refused(grouper: Grouper, tmp_path: Path) -> None:
    dataset, sop_uid = _dataset(tmp_path)
    cut = dataset.index(b"\xe0\x7f\x10\x00")  # a whole dataset, but without its Pixel Data
    assert _receive(grouper, sop_uid, dataset[:cut], 100) == instance.DATASET_MISMATCH
    assert grouper.tick() == [] and _files(tmp_path / "payloads") == []


def test_a_slow_job_store_delays_only_the_new_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A quiet window long enough that the open study is not confirmed in the store again meanwhile.
    store = Intake(JobStore(tmp_path / "jobs.sqlite3").db)
    grouper = Grouper(store, PayloadLayout(tmp_path / "payloads"), lambda _title: None, quiet_seconds=60)
    grouper.release(grouper.reserve("OrganSeg", "SENDER", "1.2.3"))  # a study already receiving
    unblock, join = threading.Event(), store.join

    def slow_join(*args: Any, **kwargs: Any) -> Any:
        unblock.wait(10)  # e.g. another process holds the store's write lock
        return join(*args, **kwargs)

    monkeypatch.setattr(store, "join", slow_join)
    slots: list[Any] = []
    new_study = [threading.Thread(target=lambda: slots.append(grouper.reserve("OrganSeg", "SENDER", "1.2.4")))
                 for _ in range(2)]
    for thread in new_study:
        thread.start()
    started = time.monotonic()
    grouper.release(grouper.reserve("OrganSeg", "SENDER", "1.2.3"))
    assert time.monotonic() - started < 1
    unblock.set()
    for thread in new_study:
        thread.join(10)
    assert len(slots) == 2 and slots[0].job_id == slots[1].job_id  # one job for the new study


def test_recovery_runs_once_and_never_beside_a_new_job(grouper: Grouper, tmp_path: Path) -> None:
    # The first C-STORE may resume the previous run's groups itself; a later recovery (the tick's)
    # must not take the new job, still without instances, for one a crash left empty.
    slot = grouper.reserve("OrganSeg", "SENDER", "1.2.3")
    assert grouper.recover() == 0
    assert (tmp_path / "payloads" / slot.job_id / "input").is_dir()
    grouper.release(slot)
