"""pynetdicom's acceptor, tuned: prompt wake-ups, a cheaper C-STORE response path, a PDU size
guard and bytes that can be given back. Private to :mod:`appliance.adapter.fastpath`.

Measured problems of a stock pynetdicom 3.0 SCP, and what this module does about them
(``TCP_NODELAY`` and the other socket options are set by :mod:`appliance.adapter.gate`):

* **Polling.** Both reactor threads of an association poll with ``time.sleep(0.001)``: ~1.5 ms
  of idle latency on every request/response round trip (a third of the per-instance time at
  512x512 CT), and ~3 % of a core per idle connection. :func:`_install_wakeups` lets each
  thread sleep on something that ends the wait as soon as there is work: the DUL thread in
  ``select()`` on its socket plus a self-pipe poked when a PDU is queued for sending or an event
  is queued for its state machine, the association thread on an Event set when a DIMSE message
  or ACSE primitive arrives. Woken that way, a reactor's 1 ms pause may last up to
  :data:`_IDLE_WAIT`: its timers (idle, ARTIM) and kill flags are then noticed that much later.
* **Per-message overhead.** Every DIMSE message runs pynetdicom's standard logging handlers,
  which format the whole command set only to log it at DEBUG, and every C-STORE-RSP is built
  through a pydicom Dataset. Together ~15 % of the CPU per instance. Unless pynetdicom's logger
  is at DEBUG (``log-dimse-datasets``), the handlers are unbound and a plain success/failure
  C-STORE-RSP is encoded by :func:`appliance.adapter.wire.store_response` (same bytes).
* **Thread hand-offs.** pynetdicom sends every PDU from the DUL thread: the association thread
  queues the response and wakes it. On a loaded 2-core host each wake-up waits for a time slice,
  which cost more wall time than the handler itself. In state Sta6 (association established) a
  P-DATA-TF needs no state change (PS3.8 9.2, action DT-1 stays in Sta6), so the association
  thread writes the response PDU itself, under a per-socket lock shared with the DUL thread's
  sends. Only when nothing is queued before it: the SCP is synchronous (one operation at a
  time), so there is no earlier response it could overtake. :func:`send_command` does this,
  also for the C-STORE-RSPs that :mod:`~appliance.adapter.fastpath.pdata` sends from the DUL thread.
* **Per-association copies.** pynetdicom deep-copies the server's presentation contexts for every
  association: ~130 storage SOP classes x every transfer syntax, ~18 % of the CPU of a
  200-instance association. :func:`cheap_context_copies` makes that copy shallow where that is
  exact (a context's only mutable member is its transfer syntax list).
* **Unbounded PDUs.** pynetdicom reads whatever length a PDU header announces, and allocates it
  first. :class:`_Socket` refuses (drops the connection) a PDU it reads for pynetdicom that is
  longer than ``limit`` (association-level PDUs: small), and reads P-DATA for the receiver with
  ``recv_into`` into one buffer reused for every PDU (:meth:`_Socket.recv_view`). Bytes read can
  be given back (:meth:`_Socket.unread`) for pynetdicom's own reader, which is how the receiver
  hands over the PDUs it does not handle itself.

The wake-ups replace the ``time`` module that ``pynetdicom.association`` and ``pynetdicom.dul``
imported by a shim; threads without a wake-up installed (requestor associations, e.g. the
exporter) keep the plain ``time.sleep``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import queue
import select
import struct
import threading
import time as _time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pynetdicom.association as _association_module
import pynetdicom.dul as _dul_module
from pynetdicom import evt
from pynetdicom._handlers import standard_dimse_recv_handler, standard_dimse_sent_handler
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket
from pynetdicom.transport import RequestHandler as _PynetdicomRequestHandler

from appliance.adapter import wire

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.dul import DULServiceProvider
    from pynetdicom.transport import AssociationServer

_WAITER = "_appliance_wait"
#: Longest pause of a reactor thread whose wake-ups are installed (seconds); pynetdicom's is 1 ms.
_IDLE_WAIT = 0.05
_RUN_LOOP_DELAY = 0.001  # pynetdicom's reactor pause, the one the wake-ups stretch
_P_DATA_TF = struct.Struct(">BBIIBB")


class _WakingQueue(queue.Queue[Any]):
    """A queue that calls ``wake`` after each put."""

    def __init__(self, wake: Any) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


class _TimeShim:
    """Stands in for the ``time`` module inside pynetdicom's association and DUL modules."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        waiter = getattr(threading.current_thread(), _WAITER, None)
        if waiter is None:
            _time.sleep(seconds)
        else:
            # The reactor's pause may last longer: anything it must act on wakes it.
            waiter(_IDLE_WAIT if seconds <= _RUN_LOOP_DELAY else seconds)


def _patch_modules() -> None:
    # Idempotent; done at import so every acceptor created through RequestHandler has it.
    for module in (_association_module, _dul_module):
        if not isinstance(getattr(module, "time", None), _TimeShim):
            setattr(module, "time", _TimeShim())  # noqa: B010 - private attribute of pynetdicom


_patch_modules()


def _install_wakeups(assoc: Association) -> None:
    """Give ``assoc`` and its DUL thread event-driven sleeps (before either thread starts)."""
    assoc_event = threading.Event()

    def assoc_wait(seconds: float) -> None:
        assoc_event.wait(seconds)
        assoc_event.clear()

    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake_dul() -> None:
        # OSError: pipe full (already awake) or closed (association over).
        with contextlib.suppress(OSError):
            os.write(write_end, b"\0")

    dul = assoc.dul

    def dul_wait(seconds: float) -> None:
        sock = dul.socket.socket if dul.socket is not None else None
        watched: list[Any] = [read_end]
        if sock is not None and sock.fileno() >= 0:
            watched.append(sock)
        try:
            select.select(watched, [], [], seconds)
            os.read(read_end, 4096)
        except BlockingIOError:
            pass
        except (OSError, ValueError):  # socket closed under us: behave like stock pynetdicom
            _time.sleep(seconds)

    def close_pipe() -> None:
        for fd in (read_end, write_end):
            with contextlib.suppress(OSError):
                os.close(fd)

    setattr(assoc, _WAITER, assoc_wait)
    setattr(dul, _WAITER, dul_wait)
    assoc.dimse.msg_queue = _WakingQueue(assoc_event.set)
    dul.to_user_queue = _WakingQueue(assoc_event.set)
    dul.to_provider_queue = _WakingQueue(wake_dul)
    events = _WakingQueue(wake_dul)
    while not dul.event_queue.empty():  # Evt5, queued when the socket was wrapped
        events.put(dul.event_queue.get_nowait())
    dul.event_queue = events
    # The pipe lives as long as the DUL thread; closing it when the association object is
    # collected would race the thread, so close it from the thread that ends last.
    on_dul_exit(dul, close_pipe)


def on_dul_exit(dul: DULServiceProvider, callback: Callable[[], None]) -> None:
    """Run ``callback`` on ``dul``'s thread when it ends, however it ends (before it starts)."""
    original_run = dul.run

    def run_then_callback() -> None:
        try:
            original_run()
        finally:
            callback()

    dul.run = run_then_callback  # type: ignore[method-assign]


def _install_fast_store_response(assoc: Association) -> None:
    """Drop DEBUG-only log handlers and encode plain C-STORE-RSPs directly (see module doc)."""
    if logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
        return
    assoc.unbind(evt.EVT_DIMSE_RECV, standard_dimse_recv_handler)
    assoc.unbind(evt.EVT_DIMSE_SENT, standard_dimse_sent_handler)
    dimse = assoc.dimse
    stock_send = dimse.send_msg

    def send_msg(primitive: Any, context_id: int) -> None:
        encoded: bytes | None = None
        if (isinstance(primitive, C_STORE) and primitive.MessageIDBeingRespondedTo is not None
                and primitive.ErrorComment is None and primitive.OffendingElement is None
                and isinstance(primitive.Status, int) and not assoc.get_handlers(evt.EVT_DIMSE_SENT)):
            encoded = wire.store_response(str(primitive.AffectedSOPClassUID or ""),
                                          primitive.MessageIDBeingRespondedTo, primitive.Status,
                                          str(primitive.AffectedSOPInstanceUID or ""))
        if encoded is None or not send_command(assoc, context_id, encoded):
            stock_send(primitive, context_id)

    dimse.send_msg = send_msg  # type: ignore[method-assign]


def send_command(assoc: Association, context_id: int, encoded: bytes) -> bool:
    """Send ``encoded``, a command set with no data set, as one P-DATA-TF; False if it does not fit.

    On the socket at once when nothing is queued before it in state Sta6 (see the module doc),
    else through pynetdicom's queue. False (nothing sent) when the PDU would exceed the peer's
    maximum PDU length: the caller then sends through pynetdicom, which fragments.
    """
    dimse = assoc.dimse
    limit = dimse.maximum_pdu_size
    if limit and len(encoded) + 6 > limit:
        return False
    dul = dimse.dul
    sock = dul.socket
    if (isinstance(sock, _Socket) and dul.state_machine.current_state == "Sta6"
            and dul.to_provider_queue.empty()):
        # P-DATA-TF PDU (PS3.8 9.3.5): type 4, length; one PDV item: length, context ID,
        # message control header 0x03 (command, last fragment; PS3.8 E.2), the command set.
        sock.send(_P_DATA_TF.pack(0x04, 0, len(encoded) + 6, len(encoded) + 2, context_id, 0x03)
                  + encoded)
        return True
    pdata = P_DATA()
    pdata.presentation_data_value_list.append((context_id, b"\x03" + encoded))
    dul.send_pdu(pdata)
    return True


class _Socket(AssociationSocket):
    """An acceptor socket that refuses oversized PDUs, reads P-DATA into one reused buffer, and
    can take bytes back (:meth:`unread`) for pynetdicom's own PDU reader to read again."""

    limit: int  # longest read for pynetdicom's reader (association-level PDUs), bytes
    send_lock: threading.Lock
    _pushback: bytes
    _buffer: bytearray

    def adopt(self, limit: int) -> None:
        """Set up the attributes of a wrapper just re-classed to this class."""
        self.send_lock = threading.Lock()
        self.limit = limit
        self._pushback = b""
        self._buffer = bytearray()

    def send(self, bytestream: bytes) -> None:
        # Two threads send on an acceptor socket (see the module doc); a PDU must not interleave.
        with self.send_lock:
            super().send(bytestream)

    @property
    def ready(self) -> bool:
        """True if data can be read: bytes given back, or data on the socket."""
        return bool(self._pushback) or bool(super().ready)

    def unread(self, data: bytes) -> None:
        """Put ``data`` back: the next reads return it before anything from the socket."""
        self._pushback = data + self._pushback

    def recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self.limit:
            # Raising OSError is what pynetdicom treats as "connection closed" (Evt17): the
            # association is dropped without reading or allocating the announced length.
            raise OSError(f"peer announced a {nr_bytes}-byte PDU, more than the {self.limit} allowed")
        buffer = bytearray(nr_bytes)
        with memoryview(buffer) as view:
            got = self._fill(view)
        if got < nr_bytes:  # peer closed: pynetdicom expects the short read
            del buffer[got:]
        return buffer

    def recv_view(self, nr_bytes: int) -> memoryview:
        """Read ``nr_bytes`` (fewer if the peer closed) into a buffer reused by the next call.

        The view is valid until the next call; no new buffer per PDU. The caller checks the
        length against the negotiated maximum. Raises TimeoutError when the peer is silent for
        the socket's timeout (``network-timeout-seconds``, set by the gate).
        """
        if len(self._buffer) < nr_bytes:
            self._buffer = bytearray(nr_bytes)
        view = memoryview(self._buffer)[:nr_bytes]
        return view[:self._fill(view)]

    def _fill(self, view: memoryview) -> int:
        got = 0
        if self._pushback:
            got = min(len(self._pushback), len(view))
            view[:got] = self._pushback[:got]
            self._pushback = self._pushback[got:]
        sock = self.socket
        if sock is None:  # closed under us: a short read, as for a peer that hung up
            return got
        while got < len(view):
            n = sock.recv_into(view[got:], len(view) - got)
            if n == 0:
                break
            got += n
        return got


def request_handler(hook: Callable[[Association], None], limit: int) -> type[_PynetdicomRequestHandler]:
    """pynetdicom's acceptor request handler with the tuning above; ``hook`` gets each new
    association before its threads start; ``limit`` caps PDUs read by pynetdicom's own reader."""

    class RequestHandler(_PynetdicomRequestHandler):
        def _create_association(self) -> Association:
            assoc = super()._create_association()
            # Re-class the wrapper pynetdicom just made rather than making a second one: its
            # constructor has already queued the transport-connected event (Evt5).
            wrapper = assoc.dul.socket
            assert wrapper is not None
            wrapper.__class__ = _Socket
            assert isinstance(wrapper, _Socket)
            wrapper.adopt(limit)
            _install_wakeups(assoc)
            _install_fast_store_response(assoc)
            hook(assoc)
            return assoc

    return RequestHandler


class _Contexts(list[PresentationContext]):
    """Presentation contexts whose deep copy is a copy of each context and its syntax list."""

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        copies = []
        for cx in self:
            dup = copy.copy(cx)
            dup._transfer_syntax = list(cx._transfer_syntax)
            copies.append(dup)
        return copies


def cheap_context_copies(server: AssociationServer) -> None:
    """Make the per-association copy of ``server``'s contexts cheap (see the module doc)."""
    server.contexts = _Contexts(server.contexts)
