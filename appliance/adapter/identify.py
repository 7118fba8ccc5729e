"""Read the few identifying attributes of a received dataset from its encoded bytes.

Only the elements up to (0020,000E) are parsed (raw, undecoded values), so pixel data is never
touched: grouping needs the StudyInstanceUID, nothing more.

Two paths: :func:`_scan` walks the element headers of little-endian datasets in place (no copy
of the ~0.5 MB buffer, no pydicom objects) and answers the common case; anything it does not
handle plainly (undefined-length sequences before the UIDs, big endian, deflate, truncation, an
invalid UID) goes to pydicom, whose answer, and error, is authoritative.
"""

from __future__ import annotations

import enum
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


class _WalkEnd(enum.Enum):
    """Why :func:`_walk` stopped."""

    PASSED = 1  # at an element after (0020,000E): later bytes cannot change the UIDs
    END = 2  # the bytes ended between elements
    TRUNCATED = 3  # the bytes ended inside an element
    PYDICOM = 4  # an undefined length or a non-ASCII UID: only pydicom can tell


def _walk(data: bytes | bytearray | memoryview, implicit: bool) -> tuple[dict[int, str], _WalkEnd]:
    """The raw study and series UIDs found by walking element headers, and why the walk ended."""
    pos, end = 0, len(data)
    values: dict[int, str] = {}
    while pos + 8 <= end:
        group, element = _HEADER.unpack_from(data, pos)
        tag = group << 16 | element
        if tag > _STOP_AFTER:
            return values, _WalkEnd.PASSED
        if implicit:
            (length,) = _LONG_LENGTH.unpack_from(data, pos + 4)
            start = pos + 8
        elif bytes(data[pos + 4:pos + 6]) in _LONG_VRS:
            if pos + 12 > end:
                return values, _WalkEnd.TRUNCATED
            (length,) = _LONG_LENGTH.unpack_from(data, pos + 8)
            start = pos + 12
        else:
            (length,) = _SHORT_LENGTH.unpack_from(data, pos + 6)
            start = pos + 8
        if length == 0xFFFFFFFF:
            return values, _WalkEnd.PYDICOM  # sequence items to walk
        if start + length > end:
            return values, _WalkEnd.TRUNCATED
        if tag in (_STUDY, _SERIES):
            try:
                values[tag] = bytes(data[start:start + length]).decode("ascii").strip("\0 ")
            except UnicodeDecodeError:
                return values, _WalkEnd.PYDICOM
        pos = start + length
    return values, _WalkEnd.END


def _identity(values: dict[int, str]) -> Identity | None:
    study = values.get(_STUDY, "")
    if not study or not is_uid(study):
        return None
    return Identity(study, values.get(_SERIES))


def _scan(data: bytes | bytearray | memoryview, implicit: bool) -> Identity | None:
    """The UIDs of a complete dataset by walking element headers, or None to leave it to pydicom."""
    values, stop = _walk(data, implicit)
    return _identity(values) if stop in (_WalkEnd.PASSED, _WalkEnd.END) else None


class Head(enum.Enum):
    """What :func:`identify_head` answers when the head alone does not give the identity."""

    MORE = "more"  #: read on: a longer head may tell
    WHOLE = "whole"  #: only :func:`identify` on the complete dataset can tell (or refuse)


def identify_head(head: bytes | bytearray | memoryview, transfer_syntax: str) -> Identity | Head:
    """The identity from the first bytes of a dataset, where they settle it.

    An :class:`Identity` returned here is what :func:`identify` returns for every dataset that
    starts with ``head``, so a receiver can pick the job folder from the first P-DATA fragment
    and write the rest straight to disk. :attr:`Head.WHOLE` (big endian, deflate, an
    undefined-length sequence or a bad study UID) means: keep the dataset, ask :func:`identify`
    at its end.
    """
    ts = UID(transfer_syntax)
    if not ts.is_little_endian or ts.is_deflated:
        return Head.WHOLE
    values, stop = _walk(head, ts.is_implicit_VR)
    if stop is _WalkEnd.PASSED:
        return _identity(values) or Head.WHOLE
    return Head.WHOLE if stop is _WalkEnd.PYDICOM else Head.MORE


def identify(encoded: bytes | bytearray | memoryview, transfer_syntax: str) -> Identity:
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
