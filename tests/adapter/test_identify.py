"""The dataset walker: the identity pydicom reads, in any fragmentation; nothing cut short is whole."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from appliance.adapter.identify import DatasetWalker, Identity, NotIdentifiable, Unparseable, identify, is_uid

IMPLICIT, EXPLICIT, BIG, DEFLATED, J2K = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                                          "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.90")
CT = "1.2.840.10008.5.1.4.1.1.2"


def _item(**elements: object) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _dataset(sequence: str | None, encapsulated: bool = False) -> Dataset:
    """A CT-like dataset; ``sequence``: None, ``defined``, ``undefined`` or ``nested`` (undefined
    lengths two levels deep), before the study UID."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CT, generate_uid(), "CT"
    if sequence:
        inner = _item(CodeValue="1", CodingSchemeDesignator="99X", CodeMeaning="x")
        outer = _item(ReferencedSOPClassUID=CT, ReferencedSOPInstanceUID="1.2.3")
        if sequence == "nested":
            outer.PurposeOfReferenceCodeSequence = Sequence([inner])
            outer["PurposeOfReferenceCodeSequence"].is_undefined_length = True
            outer.is_undefined_length_sequence_item = True
        ds.ReferencedImageSequence = Sequence([outer, _item(ReferencedSOPClassUID=CT)])
        ds["ReferencedImageSequence"].is_undefined_length = sequence != "defined"
        for item in ds.ReferencedImageSequence:
            item.is_undefined_length_sequence_item = sequence != "defined"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.SamplesPerPixel = 16, 1
    if encapsulated:
        ds.PixelData = encapsulate([b"\x01" * 30, b"\x02" * 41])
        ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    else:
        ds.PixelData = b"\0" * 128
    return ds


def _encode(ds: Dataset, syntax: str) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = syntax != BIG
    fp.is_implicit_VR = syntax == IMPLICIT
    write_dataset(fp, ds)
    return fp.getvalue()


def _walk(data: bytes, syntax: str, size: int) -> Identity:
    walker = DatasetWalker(syntax)
    for start in range(0, len(data), size):
        walker.feed(memoryview(data)[start:start + size])
    return walker.finish()


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT, BIG])
@pytest.mark.parametrize("sequence", [None, "defined", "undefined", "nested"])
@pytest.mark.parametrize("size", [1, 5, 13, 4096])
def test_identity_is_pydicoms_in_any_fragmentation(syntax: str, sequence: str | None, size: int) -> None:
    data = _encode(_dataset(sequence), syntax)
    ds = read_dataset(BytesIO(data), syntax == IMPLICIT, syntax != BIG)
    assert _walk(data, syntax, size) == Identity(ds.StudyInstanceUID, ds.SeriesInstanceUID)


def test_encapsulated_pixel_data_and_undefined_length_un() -> None:
    ds = _dataset("nested", encapsulated=True)
    data = _encode(ds, EXPLICIT)
    assert _walk(data, J2K, 3).study_uid == ds.StudyInstanceUID
    # A sequence sent as UN of undefined length: its content is implicit VR little endian.
    only = Dataset()
    only.add(_dataset("nested")["ReferencedImageSequence"])
    un = struct.pack("<HH2sHL", 0x0008, 0x1140, b"UN", 0, 0xFFFFFFFF) + _encode(only, IMPLICIT)[8:]
    head = _encode(_dataset(None), EXPLICIT)
    cut = head.index(struct.pack("<HH", 0x0020, 0x000D))
    assert _walk(head[:cut] + un + head[cut:], EXPLICIT, 7).study_uid == _study(head, EXPLICIT)


def _study(data: bytes, syntax: str) -> str:
    return str(read_dataset(BytesIO(data), syntax == IMPLICIT, syntax != BIG).StudyInstanceUID)


def test_deflated_is_inflated_as_far_as_the_identity() -> None:
    data = _encode(_dataset("undefined"), EXPLICIT)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(data) + compressor.flush()
    assert _walk(deflated, DEFLATED, 10).study_uid == _study(data, EXPLICIT)


def _top_level_ends(ds: Dataset, syntax: str) -> set[int]:
    """Offsets at which a top-level element ends (where a cut leaves a whole, shorter dataset)."""
    ends, pos = {0}, 0
    for element in ds:
        single = Dataset()
        single.add(element)
        pos += len(_encode(single, syntax))
        ends.add(pos)
    return ends


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT, BIG])
def test_a_cut_anywhere_but_between_top_level_elements_is_refused(syntax: str) -> None:
    ds = _dataset("nested")
    data = _encode(ds, syntax)
    ends = _top_level_ends(ds, syntax)
    assert len(data) in ends
    for cut in range(len(data)):
        if cut in ends:
            continue  # a whole, shorter dataset (the receiver wants Pixel Data in an image)
        walker = DatasetWalker(syntax)
        walker.feed(data[:cut])
        with pytest.raises(Unparseable):
            walker.finish()


def test_lengths_running_past_the_end_and_stray_delimiters_are_refused() -> None:
    head = _encode(_dataset(None), EXPLICIT)
    pixel_at = head.index(struct.pack("<HH", 0x7FE0, 0x0010))
    two_gb = head[:pixel_at] + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, 0x7FFFFFFE) + b"\0" * 1000
    with pytest.raises(Unparseable):
        identify(two_gb, EXPLICIT)
    with pytest.raises(Unparseable):
        identify(head + struct.pack("<HHL", 0xFFFE, 0xE00D, 0), EXPLICIT)
    with pytest.raises(Unparseable):
        identify(b"\x00" * 7, EXPLICIT)


@pytest.mark.parametrize(("value", "valid"), [
    (b"1.2.3", True), (b"1.2.3\0", True), (b"1.2.3\n", False), (b"1.2.3\r\n", False), (b"../../x", False),
    (b"1." + b"2" * 70, False), (b"", False), (b"\xff", False)])
def test_study_uid_is_checked_whole(value: bytes, valid: bool) -> None:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    data = _encode(ds, EXPLICIT)
    padded = value + (b"\0" if len(value) % 2 else b"")
    data = data[:6] + struct.pack("<H", len(padded)) + padded
    if valid:
        assert identify(data, EXPLICIT).study_uid == "1.2.3"
    else:
        with pytest.raises(NotIdentifiable):
            identify(data, EXPLICIT)
    assert not is_uid("1.2.3\n") and is_uid("1.2.3")
