"""One received instance on its way to disk, fed in fragments, and the C-STORE status it earns.

The receiver (:mod:`appliance.adapter.fastpath`) feeds each dataset fragment as it comes off the
socket. A :class:`~appliance.adapter.identify.DatasetWalker` follows the dataset's structure
alongside. As soon as it settles the StudyInstanceUID (normally in the first fragment), the
instance's group is reserved and a temporary file opened in the job's input folder; the file
meta header, the bytes so far and every later fragment are written straight to it. Until then
the bytes are held in memory, at most ``head_bytes`` of them; beyond that they go to an unnamed
temporary file on the storage root (``O_TMPFILE``: never visible, gone with the process), which
is copied into the job's file once the study is known. Memory per instance is therefore bounded
whatever the dataset's size or layout. :meth:`IncomingInstance.finish` checks that the dataset
is whole, applies the duplicate policy, then flushes and renames the file
(:class:`~appliance.storage.DurableFile`) and only then answers :data:`SUCCESS`.

Statuses: :data:`SUCCESS` once the instance is durably in its job's folder (or, with the default
duplicate policy, when an instance with its SOP Instance UID already is); :data:`OUT_OF_RESOURCES`
when it could not be written (disk full, I/O error, job store unavailable);
:data:`DATASET_MISMATCH` when the dataset has no valid StudyInstanceUID, or is an image
without Pixel Data (cut off before it); :data:`CANNOT_UNDERSTAND`
when it is not a whole dataset in its transfer syntax or a SOP UID is not a UID;
:data:`DUPLICATE` for a duplicate under the ``refuse`` policy. After a failure the remaining
fragments are read and dropped, so the sender always gets an answer.
"""

from __future__ import annotations

import functools
import io
import logging
import tempfile

from pydicom.uid import UID

from appliance.adapter.grouping import INSTANCE_SUFFIX, Grouper, Slot
from appliance.adapter.identify import DatasetWalker, NotIdentifiable, Unparseable, is_uid
from appliance.adapter.limits import DuplicatePolicy
from appliance.jobs import StoreError
from appliance.storage import DurableFile

LOG = logging.getLogger(__name__)

SUCCESS = 0x0000
DUPLICATE = 0x0111  # Duplicate SOP Instance (PS3.7 Annex C)
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

_COPY_CHUNK = 1 << 20  # bytes per read when moving spilled bytes into the job's file


@functools.lru_cache(maxsize=256)
def _is_image_storage(sop_class: str) -> bool:
    """True for the Image Storage SOP classes, whose instances must have Pixel Data."""
    return "Image Storage" in UID(sop_class).name


class IncomingInstance:
    """The dataset of one C-STORE request, received in fragments into ``grouper``'s folders.

    ``header`` is the file's preamble and File Meta Information (written before the dataset);
    ``called``/``calling`` are the AE titles of the association, ``calling_address`` the peer's
    IP address; ``head_bytes`` caps the bytes held in memory before the study is known (more
    spill to an unnamed file in ``spill_dir``); ``duplicates`` is the duplicate policy. Not
    thread-safe: one thread feeds it.
    """

    def __init__(self, grouper: Grouper, called: str, calling: str, sop_class: str, sop_uid: str,
                 transfer_syntax: str, header: bytes, *, head_bytes: int, spill_dir: str | None = None,
                 duplicates: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST, calling_address: str = "") -> None:
        self._grouper = grouper
        self._called = called
        self._calling = calling
        self._calling_address = calling_address
        self._sop_uid = sop_uid
        self._header = header
        self._head_bytes = head_bytes
        self._spill_dir = spill_dir
        self._duplicates = duplicates
        self._walker = DatasetWalker(transfer_syntax)
        self._is_image = _is_image_storage(sop_class)
        self._head = bytearray()  # dataset bytes held while the study is not known yet
        self._spill: io.BufferedRandom | None = None  # where they go beyond head_bytes
        self._slot: Slot | None = None
        self._file: DurableFile | None = None
        self._status: int | None = None  # a failure status, once decided
        # The SOP Instance UID becomes a file name: anything but a UID could escape the folder.
        if not is_uid(sop_uid) or not is_uid(sop_class):
            self.refuse(CANNOT_UNDERSTAND, f"invalid SOP UID(s) {sop_class!r}/{sop_uid!r}")

    def refuse(self, status: int, why: str) -> None:
        """Answer ``status`` whatever the data set holds (read and dropped)."""
        if self._status is None:
            LOG.warning("C-STORE %r from %s: refused (0x%04X): %s", self._sop_uid, self._calling, status, why)
            self._status = status
        self.abort()

    def feed(self, fragment: bytes | bytearray | memoryview) -> None:
        """Take the next ``fragment`` of the dataset (not kept: it may be a reused buffer)."""
        if self._status is not None:
            return
        walker = self._walker
        walker.feed(fragment)
        if walker.error is not None:
            self.refuse(CANNOT_UNDERSTAND, f"dataset cannot be parsed: {walker.error}")
        elif self._file is not None:
            self._write(fragment)
        else:
            self._hold(fragment)
            if walker.settled:
                self._settle()

    def finish(self) -> int:
        """The dataset is complete: make it durable and return the C-STORE status."""
        try:
            if self._status is not None:
                return self._status
            try:
                self._walker.finish()
            except NotIdentifiable as exc:
                self.refuse(CANNOT_UNDERSTAND if isinstance(exc, Unparseable) else DATASET_MISMATCH, str(exc))
                return self._status or CANNOT_UNDERSTAND
            if self._is_image and not self._walker.has_pixel_data:
                self.refuse(DATASET_MISMATCH, "an image without Pixel Data (truncated before it?)")
                return DATASET_MISMATCH
            if self._file is None:
                self._settle()
            if self._status is not None:
                return self._status
            assert self._file is not None and self._slot is not None
            if not self._slot.claim(self._sop_uid):
                return self._duplicate()
            try:
                self._file.commit()
            except OSError as exc:
                return self._fail(exc)
            self._file = None
            self._slot.stored(self._sop_uid)
            return SUCCESS
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop whatever was written (the association ended mid-instance); idempotent."""
        if self._file is not None:
            self._file.discard()
            self._file = None
        if self._slot is not None:
            self._grouper.release(self._slot)
            self._slot = None
        self._head = bytearray()
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def _hold(self, fragment: bytes | bytearray | memoryview) -> None:
        """Keep ``fragment`` until the study is known: in memory up to ``head_bytes``, then spilled."""
        if self._spill is None and len(self._head) + len(fragment) <= self._head_bytes:
            self._head += fragment
            return
        try:
            if self._spill is None:
                # Closed by abort() or once copied into the job's file.
                self._spill = tempfile.TemporaryFile(dir=self._spill_dir)  # noqa: SIM115
                self._spill.write(self._head)
                self._head = bytearray()
            self._spill.write(fragment)
        except OSError as exc:
            self._fail(exc)

    def _settle(self) -> None:
        """The walker knows the study (or that there is none): open the job's file, write what is held."""
        identity = self._walker.identity
        if identity is None:
            if self._walker.error is None:
                self.refuse(DATASET_MISMATCH, "no valid StudyInstanceUID")
            return
        try:
            self._slot = self._grouper.reserve(self._called, self._calling, identity.study_uid,
                                               self._calling_address)
            self._file = DurableFile(self._slot.input_dir, self._sop_uid + INSTANCE_SUFFIX)
        except (OSError, StoreError) as exc:
            self._fail(exc)
            return
        self._write(self._header)
        if self._spill is not None:
            spill, self._spill = self._spill, None
            with spill:
                try:
                    spill.seek(0)
                    buffer = bytearray(_COPY_CHUNK)
                    while n := spill.readinto(buffer):
                        self._write(memoryview(buffer)[:n])
                except OSError as exc:
                    self._fail(exc)
        self._write(self._head)
        self._head = bytearray()

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self._file is None:  # failed already
            return
        try:
            self._file.write(data)
        except OSError as exc:
            self._fail(exc)

    def _duplicate(self) -> int:
        assert self._slot is not None
        policy = self._duplicates
        LOG.warning("C-STORE %s from %s: duplicate SOP Instance UID in job %s; the first one is kept "
                    "(duplicate policy %s)", self._sop_uid, self._calling, self._slot.job_id, policy.value)
        return SUCCESS if policy is DuplicatePolicy.KEEP_FIRST else DUPLICATE

    def _fail(self, exc: OSError | StoreError) -> int:
        LOG.error("C-STORE %s from %s: not stored: %s", self._sop_uid, self._calling, exc)
        self._status = OUT_OF_RESOURCES
        self.abort()
        return OUT_OF_RESOURCES
