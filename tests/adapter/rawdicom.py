"""A DICOM upper-layer client written by hand, for the hostile tests and the ingest benchmark.

Every byte it sends is chosen by the caller: half an A-ASSOCIATE-RQ, a PDU that stops in the
middle, a command set that never ends, a 200 MB dataset streamed in pieces without holding it
in memory, or a well-formed C-STORE. It shares no code with the adapter (PS3.8 9.3 and E.2,
PS3.7 9.3.1 and E.1 are encoded here), so the adapter's own encoders cannot hide their bugs.

Sources: on Linux every 127.0.0.0/8 address is the loopback interface, so :func:`source_address`
gives each attacker its own source address (the adapter caps pending connections per source).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
COMMAND, LAST = 0x01, 0x02  # message control header bits (PS3.8 E.2)


def source_address(n: int) -> str:
    """The ``n``-th loopback address other than 127.0.0.1 (n = 0, 1, ...)."""
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def connect(port: int, source: str = "127.0.0.1", timeout: float = 15.0) -> socket.socket:
    """A TCP connection to the adapter on loopback, from ``source``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def _uid(value: str) -> bytes:
    return value.encode("ascii")


def associate_rq(called: str = "OrganSeg", calling: str = "RAWSCU",
                 contexts: Iterable[tuple[str, Iterable[str]]] = ((CT_IMAGE_STORAGE, (EXPLICIT_LE,)),
                                                                  (VERIFICATION, (IMPLICIT_LE,))),
                 max_pdu: int = 65536) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) proposing ``contexts`` with IDs 1, 3, 5, ..."""
    items = [_item(0x10, _uid(APPLICATION_CONTEXT))]
    for n, (abstract, syntaxes) in enumerate(contexts):
        sub = _item(0x30, _uid(abstract)) + b"".join(_item(0x40, _uid(ts)) for ts in syntaxes)
        items.append(_item(0x20, struct.pack(">BBBB", 2 * n + 1, 0, 0, 0) + sub))
    user = _item(0x51, struct.pack(">L", max_pdu)) + _item(0x52, _uid("1.2.3.4.5.6.7"))
    items.append(_item(0x50, user))
    body = (struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16)
            + b"\0" * 32 + b"".join(items))
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def pdu(*pdvs: tuple[int, int, bytes]) -> bytes:
    """A P-DATA-TF PDU (PS3.8 9.3.5) holding ``(context ID, control header, fragment)`` PDVs."""
    items = b"".join(struct.pack(">LBB", len(data) + 2, cx, control) + data for cx, control, data in pdvs)
    return struct.pack(">BBL", 0x04, 0, len(items)) + items


def _element(element: int, value: bytes) -> bytes:
    # Command set: group 0000, implicit VR little endian, even lengths (PS3.7 6.3.1).
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHL", 0x0000, element, len(value)) + value


def command_set(elements: dict[int, bytes]) -> bytes:
    """An encoded command set: (0000,0000) group length, then ``elements`` in order."""
    body = b"".join(_element(e, v) for e, v in sorted(elements.items()))
    return _element(0x0000, struct.pack("<L", len(body))) + body


def store_rq(sop_uid: str, message_id: int = 1, sop_class: str = CT_IMAGE_STORAGE,
             priority: int | None = 0) -> bytes:
    """The command set of a C-STORE-RQ with a data set (PS3.7 9.3.1.1); ``priority=None`` leaves
    out the (required) Priority element, as some senders do."""
    elements = {0x0002: _uid(sop_class), 0x0100: struct.pack("<H", 0x0001),
                0x0110: struct.pack("<H", message_id), 0x0800: struct.pack("<H", 0x0000),
                0x1000: _uid(sop_uid)}
    if priority is not None:
        elements[0x0700] = struct.pack("<H", priority)
    return command_set(elements)


def echo_rq(message_id: int = 1) -> bytes:
    """The command set of a C-ECHO-RQ."""
    return command_set({0x0002: _uid(VERIFICATION), 0x0100: struct.pack("<H", 0x0030),
                        0x0110: struct.pack("<H", message_id), 0x0800: struct.pack("<H", 0x0101)})


def parse_command(data: bytes) -> dict[int, bytes]:
    """Elements of an encoded command set, raw."""
    elements, pos = {}, 0
    while pos + 8 <= len(data):
        _, element, length = struct.unpack_from("<HHL", data, pos)
        elements[element] = data[pos + 8:pos + 8 + length]
        pos += 8 + length
    return elements


class Closed(Exception):
    """The adapter closed the connection, or sent an A-ABORT or A-ASSOCIATE-RJ."""


@dataclass
class RawAssociation:
    """One association built by hand; ``contexts`` maps accepted abstract syntax -> context ID."""

    sock: socket.socket
    contexts: dict[str, int] = field(default_factory=dict)
    max_pdu: int = 16384

    @classmethod
    def open(cls, port: int, source: str = "127.0.0.1", called: str = "OrganSeg", calling: str = "RAWSCU",
             syntax: str = EXPLICIT_LE, timeout: float = 15.0) -> RawAssociation:
        """Connect and negotiate CT Image Storage (``syntax``) and Verification; raise Closed if refused."""
        sock = connect(port, source, timeout)
        sock.sendall(associate_rq(called, calling, ((CT_IMAGE_STORAGE, (syntax,)), (VERIFICATION, (IMPLICIT_LE,)))))
        assoc = cls(sock)
        pdu_type, body = assoc.read_pdu()
        if pdu_type != 0x02:
            sock.close()
            raise Closed(f"association refused: PDU type {pdu_type:#04x} {body[:8].hex()}")
        abstract_by_id = {1: CT_IMAGE_STORAGE, 3: VERIFICATION}
        pos = 68  # after the fixed fields of the A-ASSOCIATE-AC
        while pos + 4 <= len(body):
            item_type, _, length = struct.unpack_from(">BBH", body, pos)
            if item_type == 0x21 and body[pos + 6] == 0:  # presentation context, accepted
                assoc.contexts[abstract_by_id[body[pos + 4]]] = body[pos + 4]
            elif item_type == 0x50:
                sub = pos + 4
                while sub + 4 <= pos + 4 + length:
                    sub_type, _, sub_length = struct.unpack_from(">BBH", body, sub)
                    if sub_type == 0x51:
                        assoc.max_pdu = struct.unpack_from(">L", body, sub + 4)[0] or 1 << 20
                    sub += 4 + sub_length
            pos += 4 + length
        return assoc

    def read_exactly(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            try:
                got = self.sock.recv(n - len(data))
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise Closed(str(exc)) from exc
            if not got:
                raise Closed("connection closed by the adapter")
            data += got
        return bytes(data)

    def read_pdu(self) -> tuple[int, bytes]:
        pdu_type, _, length = struct.unpack(">BBL", self.read_exactly(6))
        return pdu_type, self.read_exactly(length)

    def response(self) -> dict[int, bytes]:
        """The next response's command set; raise Closed on an A-ABORT or a hang-up."""
        command = b""
        while True:
            pdu_type, body = self.read_pdu()
            if pdu_type != 0x04:
                raise Closed(f"PDU type {pdu_type:#04x} instead of a response")
            pos = 0
            while pos < len(body):
                (length,) = struct.unpack_from(">L", body, pos)
                control = body[pos + 5]
                command += body[pos + 6:pos + 4 + length]
                pos += 4 + length
                if control & COMMAND and control & LAST:
                    return parse_command(command)

    def status(self) -> int:
        """The Status of the next response."""
        return int(struct.unpack("<H", self.response()[0x0900])[0])

    def send_dataset(self, context_id: int, chunks: Iterable[bytes], pause: float = 0.0) -> None:
        """Send the data set given as ``chunks`` (of any sizes) in PDUs of at most ``max_pdu``
        bytes, the last one flagged; sleep ``pause`` seconds between PDUs."""
        limit = self.max_pdu - 12
        pending = b""
        for chunk in chunks:
            pending += chunk
            while len(pending) > limit:
                self.sock.sendall(pdu((context_id, 0, pending[:limit])))
                pending = pending[limit:]
                if pause:
                    time.sleep(pause)
        self.sock.sendall(pdu((context_id, LAST, pending)))

    def store(self, sop_uid: str, dataset: Iterable[bytes] | bytes, message_id: int = 1,
              priority: int | None = 0) -> int:
        """One C-STORE of CT Image Storage; return its status."""
        cx = self.contexts[CT_IMAGE_STORAGE]
        self.sock.sendall(pdu((cx, COMMAND | LAST, store_rq(sop_uid, message_id, priority=priority))))
        self.send_dataset(cx, [dataset] if isinstance(dataset, bytes) else dataset)
        return self.status()

    def echo(self, message_id: int = 1) -> int:
        """One C-ECHO; return its status."""
        self.sock.sendall(pdu((self.contexts[VERIFICATION], COMMAND | LAST, echo_rq(message_id))))
        return self.status()

    def release(self) -> None:
        """A-RELEASE-RQ, wait for the A-RELEASE-RP, close."""
        try:
            self.sock.sendall(struct.pack(">BBLL", 0x05, 0, 4, 0))
            self.read_pdu()
        except (Closed, OSError):
            pass
        finally:
            self.sock.close()


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True if the adapter closes ``sock`` (EOF or reset) within ``timeout`` seconds (0: has it
    already?); anything it sends first (an A-ABORT) is read and ignored."""
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.0, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except (TimeoutError, BlockingIOError):
            return False
        if time.monotonic() >= deadline:
            return False


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in pieces of ``size`` bytes."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def dataset_head(study_uid: str, sop_uid: str, *, syntax: str = EXPLICIT_LE, sequence_first: bool = False,
                 private_bytes: int = 0, study_uid_raw: bytes | None = None) -> bytes:
    """The encoded elements of a CT instance up to (not including) its Pixel Data, in ``syntax``.

    ``sequence_first``: an undefined-length sequence precedes the StudyInstanceUID;
    ``private_bytes``: a private OB element of that many bytes precedes it too;
    ``study_uid_raw``: the StudyInstanceUID's value bytes exactly as given (e.g. with a newline).
    """
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "CT"
    ds.PatientID = "RAW"
    if sequence_first:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = CT_IMAGE_STORAGE, "1.2.3.4"
        ds.ReferencedImageSequence = Sequence([item])  # (0008,1140)
        ds["ReferencedImageSequence"].is_undefined_length = True
        ds.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
    if private_bytes:
        ds.add_new(0x00090010, "LO", "RAWDICOM")
        ds.add_new(0x00091000, "OB", b"\0" * private_bytes)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = study_uid + ".1"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 512, 512, 16, 16, 15
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    fp = DicomBytesIO()
    fp.is_little_endian = syntax != EXPLICIT_BE
    fp.is_implicit_VR = syntax == IMPLICIT_LE
    write_dataset(fp, ds)
    encoded = fp.getvalue()
    if study_uid_raw is not None:
        old = study_uid.encode() + (b"\0" if len(study_uid) % 2 else b"")
        new = study_uid_raw + (b"\0" if len(study_uid_raw) % 2 else b"")
        length_format = {IMPLICIT_LE: "<L", EXPLICIT_LE: "<H", EXPLICIT_BE: ">H"}[syntax]
        old_length, new_length = struct.pack(length_format, len(old)), struct.pack(length_format, len(new))
        encoded = encoded.replace(old_length[:len(old_length)] + old, new_length + new, 1)
    return encoded


def pixel_data(nbytes: int, syntax: str = EXPLICIT_LE, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A (7FE0,0010) OW Pixel Data element of ``nbytes`` zero bytes, header first, in ``chunk`` pieces."""
    if syntax == IMPLICIT_LE:
        yield struct.pack("<HHL", 0x7FE0, 0x0010, nbytes)
    else:
        order = ">" if syntax == EXPLICIT_BE else "<"
        yield struct.pack(f"{order}HH2sHL", 0x7FE0, 0x0010, b"OW", 0, nbytes)
    zeros = bytes(chunk)
    left = nbytes
    while left > 0:
        yield zeros[:min(chunk, left)]
        left -= chunk
