"""The P-DATA receiver, with hand-made PDUs: any fragmentation, mixed messages, broken order, hang-ups."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import pytest
from adapterkit import Adapter, base_config, echoscu, free_port, storescu, wait_for
from ctseries import Series
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from appliance.adapter.service import Adapter as Service
from appliance.settings import parse_config

PDV = tuple[int, int, bytes]  # context ID, message control header, fragment
COMMAND, LAST = 0x01, 0x02


def _pdu(*pdvs: PDV) -> bytes:
    """A P-DATA-TF PDU (PS3.8 9.3.5) holding ``pdvs``."""
    items = b"".join(struct.pack(">LBB", len(data) + 2, cx, control) + data for cx, control, data in pdvs)
    return struct.pack(">BBL", 0x04, 0, len(items)) + items


def _store_command(sop_uid: str, message_id: int = 1) -> bytes:
    req = C_STORE()
    req.MessageID = message_id
    req.AffectedSOPClassUID = CTImageStorage
    req.AffectedSOPInstanceUID = sop_uid
    req.Priority = 2
    req.DataSet = BytesIO(b"\0\0")
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    return bytes(encode(message.command_set, True, True))


def _echo_command(message_id: int) -> bytes:
    req = C_ECHO()
    req.MessageID = message_id
    req.AffectedSOPClassUID = Verification
    message = C_ECHO_RQ()
    message.primitive_to_message(req)
    return bytes(encode(message.command_set, True, True))


def _dataset(path: Path, sop_uid: str, undefined_sequence: bool = False) -> bytes:
    """The dataset of ``path`` (explicit VR LE) with a new SOP Instance UID."""
    ds = dcmread(path)
    ds.SOPInstanceUID = sop_uid
    if undefined_sequence:  # before the study UID: only the whole dataset tells the study
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = CTImageStorage, "1.2.3"
        ds.ReferencedImageSequence = Sequence([item])
        ds["ReferencedImageSequence"].is_undefined_length = True
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def _fragments(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


class _Raw:
    """An association whose PDUs the test writes by hand; responses are decoded by pynetdicom."""

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.store_cx = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == CTImageStorage)
        self.echo_cx = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == Verification)
        sock = assoc.dul.socket
        assert sock is not None and sock.socket is not None
        self.sock = sock.socket

    def send(self, *pdus: bytes) -> None:
        self.sock.sendall(b"".join(pdus))

    def response(self) -> int | None:
        """Status of the next response, or None when none came (association gone)."""
        _, rsp = self.assoc.dimse.get_msg(block=True)
        return None if rsp is None else int(rsp.Status)


@contextmanager
def _raw(port: int) -> Iterator[_Raw]:
    ae = AE(ae_title="RAW")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    ae.dimse_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="OrganSeg")
    assert assoc.is_established
    # Pause the requestor's reactor (as pynetdicom's send_c_* do) so responses come to us.
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.001)
    try:
        yield _Raw(assoc)
    finally:
        assoc._reactor_checkpoint.set()
        if assoc.is_established:
            assoc.release()


def _stored(adapter: Adapter) -> dict[str, bytes]:
    """SOP Instance UID -> stored dataset bytes (without preamble and file meta), all jobs."""
    stored = {}
    for path in adapter.root.glob("*/input/*.dcm"):
        data = path.read_bytes()
        meta_length = struct.unpack("<L", data[140:144])[0]
        stored[path.stem] = data[144 + meta_length:]
    return stored


def _temporaries(adapter: Adapter) -> list[Path]:
    return [p for p in adapter.root.rglob("*") if p.name.startswith(".tmp-")]


def test_any_fragmentation_and_mixed_messages_are_stored_verbatim(adapter: Adapter, series: Series) -> None:
    uids = [generate_uid() for _ in range(4)]
    data = [_dataset(series.files[0], uids[0]), _dataset(series.files[1], uids[1]),
            _dataset(series.files[2], uids[2], undefined_sequence=True), _dataset(series.files[3], uids[3])]
    with _raw(adapter.port) as raw:
        cx = raw.store_cx
        # Command in two PDUs, dataset in 1000-byte PDVs, several per PDU (the first shorter
        # than the header before the study UID).
        command = _store_command(uids[0], 1)
        raw.send(_pdu((cx, COMMAND, command[:20])), _pdu((cx, COMMAND | LAST, command[20:])))
        pdvs = [(cx, 0, f) for f in _fragments(data[0], 1000)]
        pdvs[-1] = (cx, LAST, pdvs[-1][2])
        raw.send(*(_pdu(*pdvs[i:i + 7]) for i in range(0, len(pdvs), 7)))
        assert raw.response() == 0x0000
        # C-ECHO (left to pynetdicom), then a C-STORE sharing one PDU: command and whole dataset.
        raw.send(_pdu((raw.echo_cx, COMMAND | LAST, _echo_command(2))))
        assert raw.response() == 0x0000
        raw.send(_pdu((cx, COMMAND | LAST, _store_command(uids[1], 3)), (cx, LAST, data[1])))
        assert raw.response() == 0x0000
        # The study UID comes after an undefined-length sequence: known only at the end.
        raw.send(_pdu((cx, COMMAND | LAST, _store_command(uids[2], 4))),
                 *(_pdu((cx, 0, f)) for f in _fragments(data[2], 4096)), _pdu((cx, LAST, b"")))
        assert raw.response() == 0x0000
        # A SOP Instance UID that is not a UID: refused, its data set read and dropped.
        raw.send(_pdu((cx, COMMAND | LAST, _store_command("../../etc/evil", 5))),
                 _pdu((cx, 0, data[3][:5000])), _pdu((cx, LAST, data[3][5000:])))
        assert raw.response() == 0xC000
    (job,) = adapter.wait_jobs("ready", 1)
    assert job["instance_count"] == 3
    assert _stored(adapter) == {uids[0]: data[0], uids[1]: data[1], uids[2]: data[2]}
    assert _temporaries(adapter) == []


@pytest.mark.parametrize("break_off", ["command-inside-dataset", "hang-up"])
def test_broken_off_dataset_leaves_nothing(adapter: Adapter, series: Series, break_off: str) -> None:
    uid = generate_uid()
    data = _dataset(series.files[0], uid)
    with _raw(adapter.port) as raw:
        cx = raw.store_cx
        raw.send(_pdu((cx, COMMAND | LAST, _store_command(uid))), _pdu((cx, 0, data[:60000])))
        wait_for(lambda: _temporaries(adapter), 10, "the instance's temporary file")
        if break_off == "hang-up":
            raw.sock.close()
            # Let the requestor notice its own hang-up, or its release waits for an answer.
            wait_for(lambda: not raw.assoc.dul.is_alive(), 10, "the requestor to see the hang-up")
        else:
            raw.send(_pdu((cx, COMMAND | LAST, _store_command(generate_uid(), 2))))
            # The adapter's A-ABORT takes the requestor's state machine back to idle (Sta1).
            wait_for(lambda: raw.assoc.dul.state_machine.current_state == "Sta1", 10, "the adapter's A-ABORT")
    wait_for(lambda: not _temporaries(adapter), 10, "the temporary file to go")
    if break_off != "hang-up":
        assert "command fragment inside a data set" in adapter.log()
    assert echoscu(adapter.port).returncode == 0
    time.sleep(1.5)  # the quiet window: the group had nothing stored, so no job is made
    assert adapter.jobs() == []


def test_c_store_is_served_without_pynetdicom_handler(tmp_path: Path, series: Series,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process, to see which path served the requests: pynetdicom's Storage service class
    # never runs, so no dataset is decoded or held whole in memory.
    handled: list[str] = []
    monkeypatch.setattr(StorageServiceClass, "SCP", lambda self, req, context: handled.append("pynetdicom"))
    service = Service(parse_config(base_config(tmp_path, free_port())))
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        wait_for(lambda: echoscu(service.config.dicom.scp.port).returncode == 0, 10, "the SCP")
        assert storescu(service.config.dicom.scp.port, series.files).returncode == 0
    finally:
        service.request_stop()
        runner.join(10)
    assert handled == []
    assert len(list((tmp_path / "payloads").glob("*/input/*.dcm"))) == len(series.files)


def test_with_dimse_logging_the_result_is_the_same(
        adapter_factory: Callable[..., Adapter], series: Series) -> None:
    # log-dimse-datasets: pynetdicom logs what it still sees (C-ECHO, association PDUs); C-STORE
    # is received the same way, with the same bytes stored.
    a = adapter_factory(**{"dicom.scp.log-dimse-datasets": True}).start()
    assert storescu(a.port, series.files[:3]).returncode == 0
    (job,) = a.wait_jobs("ready", 1)
    assert job["instance_count"] == 3
    stored = _stored(a)
    for uid, path in zip(series.sop_uids[:3], series.files[:3], strict=True):
        original = path.read_bytes()
        meta_length = struct.unpack("<L", original[140:144])[0]
        assert stored[uid] == original[144 + meta_length:]
