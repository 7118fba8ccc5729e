"""The hand-written encoders and the receiver's helpers produce exactly what pydicom and pynetdicom would."""

from __future__ import annotations

import copy
from io import BytesIO

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode

from appliance.adapter import wire
from appliance.adapter.fastpath.transport import _Contexts

CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT, EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"


@pytest.mark.parametrize(("instance", "syntax", "ae"), [
    ("1.2.3.44", EXPLICIT, "STORESCU"), ("1.2.3.4", IMPLICIT, ""), ("1.2.3.4", EXPLICIT, "ODD")])
def test_file_header_matches_pydicom(instance: str, syntax: str, ae: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT)
    meta.MediaStorageSOPInstanceUID = UID(instance)
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    meta.ImplementationVersionName = "APPLIANCE_0.1.0"
    meta.SourceApplicationEntityTitle = ae
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    expected = b"\0" * 128 + b"DICM" + fp.getvalue()
    assert wire.file_header(CT, instance, syntax, "1.2.826.0.1.3680043.8.498.1", "APPLIANCE_0.1.0", ae) == expected


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xA900, 0xC000])
def test_store_response_matches_pynetdicom(status: int) -> None:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = "1.2.3.45"
    rsp.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    assert wire.store_response(CT, 7, status, "1.2.3.45") == encode(message.command_set, True, True)


def test_context_copies_equal_deep_copies() -> None:
    ae = AE()
    for cx in StoragePresentationContexts[:5]:
        ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    contexts = ae.supported_contexts
    cheap, deep = copy.deepcopy(_Contexts(contexts)), copy.deepcopy(contexts)
    assert [vars(c) for c in cheap] == [vars(c) for c in deep]
    assert all(a is not b and a._transfer_syntax is not b._transfer_syntax
               for a, b in zip(cheap, contexts, strict=True))


def test_parse_command_reads_what_pynetdicom_encodes() -> None:
    from pynetdicom.dimse_messages import C_STORE_RQ

    req = C_STORE()
    req.MessageID = 513
    req.AffectedSOPClassUID = CT
    req.AffectedSOPInstanceUID = "1.2.3.45"
    req.Priority = 2
    req.DataSet = BytesIO(b"\0" * 8)
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    encoded = encode(message.command_set, True, True)
    elements = wire.parse_command(encoded)
    assert wire.command_us(elements, 0x0100) == 0x0001
    assert wire.command_us(elements, 0x0110) == 513
    assert wire.command_us(elements, 0x0700) == 2
    assert wire.command_us(elements, 0x0800) != 0x0101
    assert wire.command_uid(elements, 0x0002) == CT
    assert wire.command_uid(elements, 0x1000) == "1.2.3.45"
    assert wire.command_us(elements, 0x0120) is None and wire.command_uid(elements, 0x1030) is None
    for broken in (encoded[:-1], encoded[:5], b"\x08\x00" + encoded[2:]):
        with pytest.raises(ValueError):
            wire.parse_command(broken)
