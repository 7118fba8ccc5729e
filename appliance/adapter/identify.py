"""Follow a dataset's element structure as its bytes arrive: its identity and whether it is whole.

:class:`DatasetWalker` is fed the encoded dataset in fragments of any size and walks the element
headers (values are skipped by counting, never copied, except the two UIDs it reports). Work is
linear in the bytes fed and memory is constant: at most one partial element header, the UID
values, and one frame per open undefined-length sequence or item.

* **Identity.** The StudyInstanceUID and SeriesInstanceUID of the top level. It is settled
  (:attr:`DatasetWalker.settled`) as soon as the walk passes (0020,000E), normally in the first
  few kilobytes, so a receiver can choose the job folder and write the rest straight to disk.
* **Integrity.** At the end (:meth:`DatasetWalker.finish`) the walk must stand at an element
  boundary of the top level: every length inside the data, every undefined-length sequence and
  item closed by its delimiter. A truncated dataset, one whose Pixel Data claims more bytes than
  came, or one that is not in the negotiated transfer syntax at all, fails here.

Transfer syntaxes: implicit and explicit VR little endian, explicit VR big endian, and the
compressed ones (explicit VR little endian with encapsulated pixel data: its fragments are
items of defined length). Deflated datasets are inflated as far as the identity, with a bounded
output per fragment, and not checked further: checking all of it would cost unbounded work for a
few compressed bytes. Defined-length sequences and items are skipped whole; undefined-length
ones are walked, including UN elements of undefined length (their content is implicit VR little
endian, PS3.5 6.2.2). As pydicom reads them, an element whose VR is not two capital letters
although the transfer syntax is explicit is taken as implicit VR, and an unknown VR of two
capital letters has a 2-byte length.
"""

from __future__ import annotations

import functools
import re
import struct
import zlib
from dataclasses import dataclass

from pydicom.uid import UID

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_STUDY, _SERIES = 0x0020000D, 0x0020000E
_PIXEL_DATA = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # float, double float, (native) pixel data
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                       b"UT", b"UV"})
_UID_VALUE_MAX = 128  # bytes kept of a UID value; a longer one is invalid anyway (64 characters)
# Element headers, by byte order: (group, element, length) implicit; (group, element, VR, 16-bit
# length) explicit; the 32-bit length of a long explicit VR or of an item/delimiter.
_IMPLICIT = {True: struct.Struct("<HHL"), False: struct.Struct(">HHL")}
_EXPLICIT = {True: struct.Struct("<HH2sH"), False: struct.Struct(">HH2sH")}
_LENGTH32 = {True: struct.Struct("<L"), False: struct.Struct(">L")}
_INFLATE_CHUNK = 1 << 16  # bytes of inflated output per step, so memory stays bounded


class NotIdentifiable(ValueError):
    """The dataset lacks a valid StudyInstanceUID."""


class Unparseable(NotIdentifiable):
    """The bytes are not a whole dataset in the negotiated transfer syntax."""


@dataclass(frozen=True)
class Identity:
    """UIDs of one instance."""

    study_uid: str
    series_uid: str | None


def is_uid(value: str) -> bool:
    """True for a syntactically valid UID: digits and dots, at most 64 characters, nothing else
    (a trailing newline included)."""
    return len(value) <= 64 and _UID.fullmatch(value) is not None


def _uid_value(raw: bytes) -> str | None:
    """A UI value without its padding, or None when it is not ASCII."""
    try:
        return raw.decode("ascii").strip("\0 ")
    except UnicodeDecodeError:
        return None


@dataclass
class _Frame:
    """An open undefined-length sequence (``items`` True: only items follow) or item."""

    items: bool
    implicit: bool
    little: bool


@functools.lru_cache(maxsize=64)
def _syntax(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated) of a transfer syntax."""
    ts = UID(transfer_syntax)
    return bool(ts.is_implicit_VR), bool(ts.is_little_endian), bool(ts.is_deflated)


class DatasetWalker:
    """Walks one dataset in ``transfer_syntax`` as it is fed (see the module doc)."""

    def __init__(self, transfer_syntax: str) -> None:
        implicit, little, deflated = _syntax(transfer_syntax)
        self._implicit = implicit  # of the current level: the top, or the innermost open frame
        self._little = little
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflated else None
        self._top = _Frame(items=False, implicit=implicit, little=little)
        self._header = bytearray()  # the bytes of an element header not complete yet
        self._skip = 0  # value bytes still to pass
        self._capture: int | None = None  # tag whose value is being kept
        self._value = bytearray()
        self._stack: list[_Frame] = []
        self._study: str | None = None
        self._series: str | None = None
        self._settled = False
        self._pixels = False
        self._error: str | None = None
        self._pos = 0  # bytes walked, for messages

    @property
    def settled(self) -> bool:
        """True once later bytes cannot change :attr:`identity` (past (0020,000E), or failed)."""
        return self._settled or self._error is not None

    @property
    def identity(self) -> Identity | None:
        """The identity, once :attr:`settled` and valid; else None."""
        if not self._settled or self._error is not None or not self._study or not is_uid(self._study):
            return None
        return Identity(self._study, self._series)

    @property
    def has_pixel_data(self) -> bool:
        """True if the top level has a Pixel Data element (or Float/Double Float Pixel Data)."""
        return self._pixels

    @property
    def error(self) -> str | None:
        """Why the dataset cannot be parsed, as soon as that is known."""
        return self._error

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Walk the next ``data`` (not kept)."""
        if self._error is not None:
            return
        if self._inflater is None:
            self._walk(memoryview(data))
            return
        if self._settled:
            return  # deflated: walked as far as the identity only
        inflater = self._inflater
        chunk = inflater.decompress(bytes(data), _INFLATE_CHUNK)
        while chunk and not self._settled and self._error is None:
            self._walk(memoryview(chunk))
            chunk = inflater.decompress(inflater.unconsumed_tail, _INFLATE_CHUNK)

    def finish(self) -> Identity:
        """The dataset is complete: its identity; raises :class:`Unparseable` if it is not whole
        and :class:`NotIdentifiable` if it has no valid StudyInstanceUID."""
        if self._error is None and self._inflater is None:
            if self._skip or self._header:
                self._error = f"the data ends inside an element (byte {self._pos})"
            elif self._stack:
                self._error = "the data ends inside an undefined-length sequence or item"
        if self._error is not None:
            raise Unparseable(f"dataset cannot be parsed: {self._error}")
        self._settled = True
        identity = self.identity
        if identity is None:
            raise NotIdentifiable(f"no valid StudyInstanceUID ({self._study!r})")
        return identity

    # -- the walk -------------------------------------------------------------------------

    def _fail(self, why: str) -> None:
        self._error = f"{why} (byte {self._pos})"

    def _walk(self, data: memoryview) -> None:
        pos, end = 0, len(data)
        while pos < end and self._error is None:
            if self._skip:
                n = min(self._skip, end - pos)
                if self._capture is not None:
                    if len(self._value) < _UID_VALUE_MAX:
                        self._value += data[pos:pos + min(n, _UID_VALUE_MAX - len(self._value))]
                    if n == self._skip:
                        self._captured()
                self._skip -= n
                pos += n
                self._pos += n
                continue
            if self._header:
                # A header split across fragments: gather it, 8 bytes, then 4 more for a long VR.
                take = min((8 if len(self._header) < 8 else 12) - len(self._header), end - pos)
                self._header += data[pos:pos + take]
                pos += take
                self._pos += take
                header = bytes(self._header)
                if self._header_at(header, 0, len(header)):
                    self._header = bytearray()
                continue
            size = self._header_at(data, pos, end)
            if size:
                pos += size
                self._pos += size
            else:  # the header goes on in the next fragment
                self._header += data[pos:end]
                self._pos += end - pos
                pos = end

    def _header_at(self, data: bytes | memoryview, pos: int, end: int) -> int:
        """Act on the element header at ``data[pos:]``; return its size, or 0 if it does not
        end before ``end`` (nothing done then)."""
        if end - pos < 8:
            return 0
        little = self._little
        if self._implicit:
            group, element, length = _IMPLICIT[little].unpack_from(data, pos)
            size, vr, implicit = 8, b"", True
        else:
            group, element, vr, length = _EXPLICIT[little].unpack_from(data, pos)
            size, implicit = 8, False
            if group == 0xFFFE or not (b"AA" <= vr <= b"ZZ"):
                # An item or delimiter; or explicit VR negotiated but not sent for this element:
                # read it as implicit, as pydicom does (some writers switch inside sequences).
                (length,) = _LENGTH32[little].unpack_from(data, pos + 4)
                vr, implicit = b"", True
            elif vr in _LONG_VRS:
                if end - pos < 12:
                    return 0
                (length,) = _LENGTH32[little].unpack_from(data, pos + 8)
                size = 12
            # else a short VR, or an unknown one: the 2-byte length, as pydicom reads it
        self._element(group, element, vr, length, implicit)
        return size

    def _push(self, frame: _Frame) -> None:
        self._stack.append(frame)
        self._implicit, self._little = frame.implicit, frame.little

    def _pop(self) -> None:
        self._stack.pop()
        outer = self._stack[-1] if self._stack else self._top
        self._implicit, self._little = outer.implicit, outer.little

    def _element(self, group: int, element: int, vr: bytes, length: int, implicit: bool) -> None:
        tag = group << 16 | element
        if group == 0xFFFE:
            self._delimiter(tag, length)
            return
        stack = self._stack
        if stack and stack[-1].items:
            self._fail(f"element ({group:04X},{element:04X}) where a sequence item was expected")
            return
        if not stack and tag > _SERIES:
            self._settled = True
            self._pixels = self._pixels or tag in _PIXEL_DATA
        if length == _UNDEFINED:
            if vr not in (b"", b"SQ", b"UN", b"OB", b"OW"):
                self._fail(f"undefined length for VR {vr!r} in ({group:04X},{element:04X})")
                return
            # UN of undefined length holds implicit VR little endian (PS3.5 6.2.2).
            un = vr == b"UN"
            self._push(_Frame(items=True, implicit=implicit or un, little=True if un else self._little))
            return
        if not stack and tag in (_STUDY, _SERIES):
            if length:
                self._capture, self._value = tag, bytearray()
            else:
                self._store(tag, "")
        self._skip = length

    def _delimiter(self, tag: int, length: int) -> None:
        frame = self._stack[-1] if self._stack else None
        if frame is None:
            self._fail(f"item or delimiter ({tag >> 16:04X},{tag & 0xFFFF:04X}) at the top level")
        elif tag == _ITEM and frame.items:
            if length == _UNDEFINED:
                self._push(_Frame(items=False, implicit=frame.implicit, little=frame.little))
            else:
                self._skip = length
        elif (tag == _SEQUENCE_END and frame.items) or (tag == _ITEM_END and not frame.items):
            self._pop()
        else:
            self._fail(f"unexpected ({tag >> 16:04X},{tag & 0xFFFF:04X})")

    def _captured(self) -> None:
        assert self._capture is not None
        value = _uid_value(bytes(self._value))
        self._store(self._capture, value if value is not None else "\ufffd")
        self._capture, self._value = None, bytearray()

    def _store(self, tag: int, value: str) -> None:
        if tag == _STUDY:
            self._study = value
        else:
            self._series = value
            self._settled = True  # (0020,000E) follows (0020,000D): nothing later changes them


def identify(encoded: bytes | bytearray | memoryview, transfer_syntax: str) -> Identity:
    """The identity of a complete dataset (see :meth:`DatasetWalker.finish`)."""
    walker = DatasetWalker(transfer_syntax)
    walker.feed(encoded)
    return walker.finish()
