"""Read the few identifying attributes of a received dataset from its encoded bytes.

Only the elements up to (0020,000E) are parsed (raw, undecoded values), so pixel data is never
touched: grouping needs the StudyInstanceUID, nothing more.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_STOP_AFTER = 0x0020000E  # SeriesInstanceUID; StudyInstanceUID (0020,000D) precedes it


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


def identify(encoded: bytes | memoryview, transfer_syntax: str) -> Identity:
    """Parse the StudyInstanceUID (and SeriesInstanceUID) from a dataset in ``transfer_syntax``."""
    ts = UID(transfer_syntax)
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
