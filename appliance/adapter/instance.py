"""One received instance on its way to disk, fed in fragments, and the C-STORE status it earns.

Both receive paths use it: pynetdicom's handler feeds the whole dataset at once, the P-DATA
receiver (:mod:`~appliance.adapter.pdata`) feeds each fragment as it comes off the socket. As
soon as the first bytes give the StudyInstanceUID (:func:`~appliance.adapter.identify.identify_head`,
normally in the first fragment), the instance's group is reserved and a temporary file opened
in the job's input folder; the file meta header, the bytes so far and every later fragment
are written straight to it, with no copy of the dataset in memory. :meth:`IncomingInstance.finish`
then flushes and renames it (:class:`~appliance.storage.DurableFile`) and only then
answers :data:`SUCCESS`.

Statuses: :data:`SUCCESS` once the instance is durably in its job's folder;
:data:`OUT_OF_RESOURCES` when it could not be written (disk full, I/O error, job store
unavailable); :data:`DATASET_MISMATCH` when the dataset has no valid StudyInstanceUID;
:data:`CANNOT_UNDERSTAND` when it cannot be parsed at all or a SOP UID is not a UID. After a
failure the remaining fragments are read and dropped, so the sender always gets an answer.
"""

from __future__ import annotations

import logging
import sqlite3

from appliance.adapter.grouping import INSTANCE_SUFFIX, Grouper, Slot
from appliance.adapter.identify import Head, Identity, NotIdentifiable, Unparseable, identify, identify_head, is_uid
from appliance.storage import DurableFile

LOG = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


class IncomingInstance:
    """The dataset of one C-STORE request, received in fragments into ``grouper``'s folders.

    ``header`` is the file's preamble and File Meta Information (written before the dataset);
    ``called``/``calling`` are the AE titles of the association, ``calling_address`` the peer's
    IP address. Not thread-safe: one association thread (or DUL thread) feeds it.
    """

    def __init__(self, grouper: Grouper, called: str, calling: str, sop_class: str, sop_uid: str,
                 transfer_syntax: str, header: bytes, calling_address: str = "") -> None:
        self._grouper = grouper
        self._called = called
        self._calling = calling
        self._calling_address = calling_address
        self._sop_uid = sop_uid
        self._transfer_syntax = transfer_syntax
        self._header = header
        self._head = bytearray()  # dataset bytes kept while the study is not known yet
        self._decided = False  # identify_head answered Head.WHOLE: wait for the end
        self._slot: Slot | None = None
        self._file: DurableFile | None = None
        self._status: int | None = None  # a failure status, once decided
        # The SOP Instance UID becomes a file name: anything but a UID could escape the folder.
        if not is_uid(sop_uid) or not is_uid(sop_class):
            LOG.warning("C-STORE from %s: invalid SOP UID(s) %r/%r", calling, sop_class, sop_uid)
            self._status = CANNOT_UNDERSTAND

    def feed(self, fragment: bytes | bytearray | memoryview) -> None:
        """Take the next ``fragment`` of the dataset (not kept: it may be a reused buffer)."""
        if self._status is not None:
            return
        if self._file is not None:
            self._write(fragment)
            return
        if self._head:
            self._head += fragment
            data: bytes | bytearray | memoryview = self._head
        else:
            data = fragment
        answer = Head.WHOLE if self._decided else identify_head(data, self._transfer_syntax)
        if isinstance(answer, Identity):
            self._open(answer, data)
            self._head = bytearray()
            return
        self._decided = answer is Head.WHOLE
        if not self._head:
            self._head += fragment

    def finish(self) -> int:
        """The dataset is complete: make it durable and return the C-STORE status."""
        try:
            if self._status is None and self._file is None:
                try:
                    identity = identify(self._head, self._transfer_syntax)
                except NotIdentifiable as exc:
                    LOG.warning("C-STORE %s from %s: %s", self._sop_uid, self._calling, exc)
                    return CANNOT_UNDERSTAND if isinstance(exc, Unparseable) else DATASET_MISMATCH
                self._open(identity, self._head)
            if self._status is not None:
                return self._status
            assert self._file is not None and self._slot is not None
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

    def _open(self, identity: Identity, data: bytes | bytearray | memoryview) -> None:
        try:
            self._slot = self._grouper.reserve(self._called, self._calling, identity.study_uid,
                                               self._calling_address)
            self._file = DurableFile(self._slot.input_dir, self._sop_uid + INSTANCE_SUFFIX)
        except (OSError, sqlite3.Error) as exc:
            self._fail(exc)
            return
        self._write(self._header)
        self._write(data)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self._file is None:  # failed already
            return
        try:
            self._file.write(data)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError | sqlite3.Error) -> int:
        LOG.error("C-STORE %s from %s: not stored: %s", self._sop_uid, self._calling, exc)
        self._status = OUT_OF_RESOURCES
        self.abort()
        return OUT_OF_RESOURCES
