"""Malformed and hostile input: the adapter answers or drops the connection and keeps serving."""

from __future__ import annotations

import os
import socket
import struct
import time
from io import BytesIO
from pathlib import Path

import pytest
from adapterkit import Adapter, echoscu, storescu
from ctseries import Series
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    return s


def _reply(s: socket.socket) -> bytes:
    """The adapter's first reply: an A-ABORT/-RJ PDU, or b"" if it closed or stays silent for 3 s
    (pynetdicom then drops the connection at its network timeout)."""
    s.settimeout(3)
    try:
        return s.recv(65536)
    except (ConnectionResetError, TimeoutError):
        return b""


@pytest.mark.parametrize("payload", [
    pytest.param(os.urandom(4096), id="random-bytes"),
    pytest.param(b"\x01\x00\x00\x00\x01\x00" + b"\x00\x01" * 8, id="truncated-associate-rq"),
    pytest.param(b"\x09\x00\x00\x00\x00\x04abcd", id="unknown-pdu-type"),
    pytest.param(b"\x01\x00" + struct.pack(">L", 0xFFFFFFF0) + b"\0" * 64, id="oversized-pdu"),
])
def test_garbage_is_dropped_and_others_are_served(adapter: Adapter, payload: bytes) -> None:
    hostile = _connect(adapter.port)
    try:
        hostile.sendall(payload)
        # Meanwhile, a well-behaved peer is served.
        assert echoscu(adapter.port).returncode == 0
        if payload[:1] != b"\x01":
            # Anything but a (possibly partial) association request is dropped, with or
            # without an A-ABORT first.
            reply = _reply(hostile)
            assert reply == b"" or reply[:1] in (b"\x03", b"\x07")
    finally:
        hostile.close()
    assert echoscu(adapter.port).returncode == 0


def test_oversized_pdu_after_association_drops_only_that_association(adapter: Adapter, series: Series) -> None:
    ae = AE(ae_title="HOSTILE")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", adapter.port, ae_title="OrganSeg")
    assert assoc.is_established
    raw = assoc.dul.socket.socket
    assert raw is not None
    # A P-DATA-TF announcing 512 MiB, far above the negotiated maximum: refused unread.
    raw.sendall(b"\x04\x00" + struct.pack(">L", 512 << 20) + b"\0" * 1024)
    assert storescu(adapter.port, series.files[:2]).returncode == 0
    assoc.abort()
    assert "more than the" in adapter.log()


def _raw_store(port: int, sop_uid: str, dataset: bytes) -> int | None:
    ae = AE(ae_title="HOSTILE")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="OrganSeg")
    assert assoc.is_established
    try:
        req = C_STORE()
        req.MessageID = 1
        req.AffectedSOPClassUID = CTImageStorage
        req.AffectedSOPInstanceUID = sop_uid
        req.Priority = 2
        req.DataSet = BytesIO(dataset)
        cx = assoc.accepted_contexts[0]
        # Pause the requestor's reactor as pynetdicom's own send_c_store does, so the response
        # comes to us and not to the reactor thread.
        assoc._reactor_checkpoint.clear()
        while not assoc._is_paused:
            time.sleep(0.001)
        try:
            assoc.dimse.send_msg(req, cx.context_id)
            _, rsp = assoc.dimse.get_msg(block=True)
        finally:
            assoc._reactor_checkpoint.set()
        return None if rsp is None else int(rsp.Status)
    finally:
        assoc.release()


def _encoded(**elements: str) -> bytes:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def test_bad_datasets_get_failure_statuses(adapter: Adapter, series: Series) -> None:
    good = series.files[0].read_bytes()
    body = good[good.index(b"DICM") + 4:]
    body = body[struct.unpack("<L", body[8:12])[0] + 12:]  # skip the file meta group
    assert _raw_store(adapter.port, "1.2.3.4", os.urandom(2048)) in (0xA900, 0xC000)
    assert _raw_store(adapter.port, "1.2.3.5", _encoded(PatientID="X")) == 0xA900  # no StudyInstanceUID
    # A SOP Instance UID is a file name: traversal attempts are refused before touching disk.
    assert _raw_store(adapter.port, "../../etc/evil", body) == 0xC000
    assert _raw_store(adapter.port, "1.2.3.6", body) == 0x0000
    assert not list(Path(adapter.root).parent.rglob("evil*"))
    assert echoscu(adapter.port).returncode == 0
