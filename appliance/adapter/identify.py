"""Read the few identifying attributes of a received dataset from its encoded bytes.

Only the elements up to (0020,000E) are parsed (raw, undecoded values), so pixel data is never
touched: grouping needs the StudyInstanceUID, nothing more.

Two paths: :func:`_scan` walks the element headers of little-endian datasets in place (no copy
of the ~0.5 MB buffer, no pydicom objects) and answers the common case; anything it does not
handle plainly (undefined-length sequences before the UIDs, big endian, deflate, truncation, an
invalid UID) goes to pydicom, whose answer, and error, is authoritative.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_STOP_AFTER = 0x0020000E  # SeriesInstanceUID; StudyInstanceUID (0020,000D) precedes it
_STUDY, _SERIES = 0x0020000D, 0x0020000E
#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                       b"UT", b"UV"})
_HEADER = struct.Struct("<HH")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<I")


class NotIdentifiable(ValueError):
    """The dataset lacks a valid StudyInstanceUID."""


class Unparseable(NotIdentifiable):
    """The bytes are not a dataset in the negotiated transfer syntax."""


@dataclass(frozen=True)
class Identity:
    """UIDs of one instance."""

    study_uid: str
    series_uid: str | None


def is_uid(value: str) -> bool:
    """True for a syntactically valid UID (digits and dots, at most 64 characters)."""
    return len(value) <= 64 and _UID.match(value) is not None


def _stop(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) > _STOP_AFTER


def _scan(data: bytes | memoryview, implicit: bool) -> Identity | None:
    """The UIDs by walking element headers, or None to leave the dataset to pydicom."""
    pos, end = 0, len(data)
    values: dict[int, str] = {}
    while pos + 8 <= end:
        group, element = _HEADER.unpack_from(data, pos)
        tag = group << 16 | element
        if tag > _STOP_AFTER:
            break
        if implicit:
            (length,) = _LONG_LENGTH.unpack_from(data, pos + 4)
            start = pos + 8
        elif bytes(data[pos + 4:pos + 6]) in _LONG_VRS:
            if pos + 12 > end:
                return None
            (length,) = _LONG_LENGTH.unpack_from(data, pos + 8)
            start = pos + 12
        else:
            (length,) = _SHORT_LENGTH.unpack_from(data, pos + 6)
            start = pos + 8
        if length == 0xFFFFFFFF or start + length > end:
            return None  # undefined length (sequence items to walk) or truncated: pydicom decides
        if tag in (_STUDY, _SERIES):
            try:
                values[tag] = bytes(data[start:start + length]).decode("ascii").strip("\0 ")
            except UnicodeDecodeError:
                return None
        pos = start + length
    study = values.get(_STUDY, "")
    if not study or not is_uid(study):
        return None
    return Identity(study, values.get(_SERIES))


def identify(encoded: bytes | memoryview, transfer_syntax: str) -> Identity:
    """Parse the StudyInstanceUID (and SeriesInstanceUID) from a dataset in ``transfer_syntax``."""
    ts = UID(transfer_syntax)
    if ts.is_little_endian and not ts.is_deflated:  # compressed pixel data: still explicit VR LE
        found = _scan(encoded, ts.is_implicit_VR)
        if found is not None:
            return found
    data = bytes(encoded)
    try:
        if ts.is_deflated:
            # Deflated datasets must be inflated to be read; only the head is needed.
            data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data, 1 << 20)
        ds = read_dataset(BytesIO(data), ts.is_implicit_VR, ts.is_little_endian, stop_when=_stop)
        study = ds.get("StudyInstanceUID")
        series = ds.get("SeriesInstanceUID")
    except NotIdentifiable:
        raise
    except Exception as exc:  # pydicom raises many types on garbage; all mean "cannot parse"
        raise Unparseable(f"dataset cannot be parsed: {exc}") from exc
    study_uid = str(study).strip("\0 ") if study is not None else ""
    if not study_uid or not is_uid(study_uid):
        raise NotIdentifiable(f"no valid StudyInstanceUID ({study_uid!r})")
    series_uid = str(series).strip("\0 ") if series is not None else None
    return Identity(study_uid, series_uid)
