"""Socket-level tuning of pynetdicom's acceptor: TCP_NODELAY, a PDU size guard, prompt wake-ups.

Three measured problems of a stock pynetdicom 3.0 SCP, and what this module does about them:

* **Nagle.** pynetdicom never sets ``TCP_NODELAY``; the small C-STORE-RSP then waits for the
  peer's delayed ACK. :class:`RequestHandler` sets it on every accepted socket.
* **Polling.** Both reactor threads of an association poll with ``time.sleep(0.001)``, adding
  ~1.5 ms of idle latency to every request/response round trip (a third of the per-instance time
  at 512x512 CT). :func:`_install_wakeups` lets each thread sleep on something that ends the wait
  as soon as there is work: the DUL thread in ``select()`` on its socket plus a self-pipe poked
  when a PDU is queued for sending, the association thread on an Event set when a DIMSE message
  or ACSE primitive arrives. The timeout of each wait is pynetdicom's own, so a missed wake-up
  costs what stock pynetdicom always costs, never correctness.
* **Unbounded PDUs.** pynetdicom reads whatever length a PDU header announces. :class:`_Socket`
  refuses (drops the connection) a PDU larger than ``limit`` bytes, and reads with
  ``recv_into`` into one buffer instead of 4 KiB ``recv`` calls.

The wake-ups replace the ``time`` module that ``pynetdicom.association`` and ``pynetdicom.dul``
imported by a shim; threads without a wake-up installed (requestor associations, e.g. the
exporter) keep the plain ``time.sleep``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import threading
import time as _time
from typing import TYPE_CHECKING, Any

import pynetdicom.association as _association_module
import pynetdicom.dul as _dul_module
from pynetdicom.transport import AssociationSocket
from pynetdicom.transport import RequestHandler as _PynetdicomRequestHandler

if TYPE_CHECKING:
    from pynetdicom.association import Association

#: PDUs other than P-DATA (association requests with many contexts) may exceed the negotiated
#: maximum; 64 KiB is far above what any real A-ASSOCIATE-RQ needs.
_MIN_PDU_LIMIT = 64 * 1024
_WAITER = "_appliance_wait"


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
            waiter(seconds)


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
    # The pipe lives as long as the DUL thread; closing it when the association object is
    # collected would race the thread, so close it from the thread that ends last.
    original_run = dul.run

    def run_then_close() -> None:
        try:
            original_run()
        finally:
            close_pipe()

    dul.run = run_then_close  # type: ignore[method-assign]


class _Socket(AssociationSocket):
    """An acceptor socket that refuses oversized PDUs and reads each PDU with few syscalls."""

    limit: int = _MIN_PDU_LIMIT

    def recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self.limit:
            # Raising OSError is what pynetdicom treats as "connection closed" (Evt17): the
            # association is dropped without reading or allocating the announced length.
            raise OSError(f"peer announced a {nr_bytes}-byte PDU, more than the {self.limit} allowed")
        sock = self.socket
        assert sock is not None
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        got = 0
        while got < nr_bytes:
            n = sock.recv_into(view[got:], nr_bytes - got)
            if n == 0:  # peer closed: pynetdicom expects the short read
                del view
                return buffer[:got]
            got += n
        del view
        return buffer


class RequestHandler(_PynetdicomRequestHandler):
    """pynetdicom's acceptor request handler with the tuning above.

    ``max_pdu_bytes`` of the server's AE sets the PDU guard (never below 64 KiB).
    """

    def _create_association(self) -> Association:
        sock = self.request
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assoc = super()._create_association()
        # Re-class the wrapper pynetdicom just made rather than making a second one: its
        # constructor has already queued the transport-connected event (Evt5).
        wrapper = assoc.dul.socket
        assert wrapper is not None
        wrapper.__class__ = _Socket
        wrapper.limit = max(self.ae.maximum_pdu_size or 0, _MIN_PDU_LIMIT) + 6  # type: ignore[attr-defined]
        _install_wakeups(assoc)
        return assoc


def set_nodelay(sock: socket.socket | None) -> None:
    """Disable Nagle on ``sock`` (for requestor associations, once connected)."""
    if sock is not None and sock.fileno() >= 0:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
