"""The SCP's accept-level policy: a connection waits here, with no thread, until it has sent a
whole A-ASSOCIATE-RQ; only then is it handed to pynetdicom (issue 17).

Why at this level. pynetdicom 3.0 gives each accepted connection two threads at once, counts
them against ``maximum_associations`` before any A-ASSOCIATE, reads with no socket timeout
(so the thread that checks its ARTIM and idle timers blocks in ``recv``) and has no documented
switch for an ARTIM timeout of unassociated connections or for per-source limits. Patching its
state machine would tie the adapter to its internals; a policy in front of it needs only the
socket API and socketserver's public hooks (:class:`GatedServer`).

What the gate does with each accepted connection:

* sets ``TCP_NODELAY``, TCP keepalive (idle after ``network_timeout``) and ``TCP_USER_TIMEOUT``
  (unacknowledged sends fail after ``network_timeout``);
* keeps it, non-blocking, in a pool watched by one thread (edge-triggered epoll, looking at the
  data with ``MSG_PEEK`` so pynetdicom later reads every byte itself), until a complete
  A-ASSOCIATE-RQ PDU has arrived; then gives it a read timeout of ``network_timeout`` and
  hands it to pynetdicom (``dispatch``);
* closes it when it sends anything else first, announces an A-ASSOCIATE-RQ longer than
  ``max_request_bytes``, hangs up, or has not completed the request ``artim_seconds`` after it
  was accepted;
* over ``max_pending`` connections in the pool, or ``max_pending_per_source`` from one IP
  address, closes the oldest one (of that source): a flood then evicts itself, while a sender
  that completes its request in milliseconds is very unlikely to be the oldest;
* caps the connections handed to pynetdicom and still open at ``max_live``; when a complete
  request waits for room, the oldest handed-over connection that never got an association
  (rejected, or still negotiating after a second) is shut down;
* at :meth:`Gate.stop`, closes the pool and shuts down every handed-over socket, which ends
  the reads pynetdicom's threads block in, so the process can stop whatever the peers do.

A summary of what was closed and why is logged at most once a minute.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import socketserver
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

from appliance.adapter.limits import ReceiveLimits

LOG = logging.getLogger(__name__)

#: (IP address, port) of a peer, as socketserver and pynetdicom's events give it.
Address = tuple[str, int]

_A_ASSOCIATE_RQ = 0x01
_WATCH = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
_TICK = 0.5  # seconds: longest wait of the gate's loop (ARTIM resolution, heartbeat)
_NEGOTIATION_GRACE = 1.0  # seconds a handed-over connection may negotiate before it can be evicted
_SUMMARY_EVERY = 60.0  # seconds


@dataclass
class _Pending:
    sock: socket.socket
    address: Address
    deadline: float
    complete: bool = False


@dataclass
class _Live:
    sock: socket.socket
    since: float
    associated: bool = False


def tune(sock: socket.socket, network_timeout: float) -> None:
    """Nagle off; keepalive and unacknowledged-send limit derived from ``network_timeout`` (s)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle = max(1, int(network_timeout))
    with contextlib.suppress(AttributeError, OSError):  # Linux options
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(network_timeout * 1000))


class Gate:
    """The pool of connections that have not associated yet (see the module doc).

    ``dispatch(sock, address)`` hands a connection to pynetdicom (called on the gate's thread);
    ``max_live`` caps the handed-over connections still open; ``network_timeout`` (seconds) is
    the read timeout they get. ``clock`` is monotonic seconds (for tests).
    """

    def __init__(self, limits: ReceiveLimits, network_timeout: float,
                 dispatch: Callable[[socket.socket, Address], None], max_live: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._network_timeout = network_timeout
        self._dispatch = dispatch
        self._max_live = max_live
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}  # by file descriptor, oldest first
        self._ready: deque[int] = deque()  # complete requests waiting for room
        self._live: dict[Address, _Live] = {}
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._peek = bytearray(limits.max_request_bytes + 6)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._closed: Counter[str] = Counter()  # why connections were closed, since the last summary
        self._next_summary = clock() + _SUMMARY_EVERY
        #: Monotonic time of the gate loop's last turn (the watchdog checks it).
        self.heartbeat = clock()

    # -- called from other threads ----------------------------------------------------------

    def start(self) -> None:
        """Run the gate's loop on its own thread."""
        self._thread = threading.Thread(target=self._run, name="scp-gate", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the gate's loop runs."""
        return self._thread is not None and self._thread.is_alive()

    def counts(self) -> tuple[int, int]:
        """(connections in the pool, connections handed over and still open)."""
        with self._lock:
            return len(self._pending), len(self._live)

    def admit(self, sock: socket.socket, address: Any) -> None:
        """Take a just-accepted connection (the accept thread calls this)."""
        peer: Address = (str(address[0]), int(address[1]))
        try:
            tune(sock, self._network_timeout)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return
        now = self._clock()
        with self._lock:
            if self._stopping:
                sock.close()
                return
            self._evict_for(peer[0])
            self._pending[sock.fileno()] = _Pending(sock, peer, now + self._limits.artim_seconds)
            self._epoll.register(sock.fileno(), _WATCH)

    def associated(self, address: Address) -> None:
        """The connection from ``address`` has an association (it holds a slot now)."""
        with self._lock:
            live = self._live.get(address)
            if live is not None:
                live.associated = True

    def closed(self, address: Address) -> None:
        """pynetdicom closed the connection from ``address``."""
        with self._lock:
            self._live.pop(address, None)
        self._wake()

    def stop(self) -> None:
        """Close the pool, shut down every handed-over connection and end the loop."""
        with self._lock:
            self._stopping = True
            for pending in list(self._pending.values()):
                self._drop(pending, None)
            live = list(self._live.values())
            self._live.clear()
        for handed_over in live:
            with contextlib.suppress(OSError):
                handed_over.sock.shutdown(socket.SHUT_RDWR)
        self._wake()
        if self._thread is not None:
            self._thread.join(5)

    # -- the loop ---------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: already awake; closed: stopped
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._turn()
        except Exception:  # never expected; the watchdog notices the stale heartbeat
            LOG.exception("the connection gate stopped")
        finally:
            with contextlib.suppress(OSError):
                self._epoll.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _turn(self) -> None:
        with self._lock:
            oldest = next(iter(self._pending.values()), None)
        now = self._clock()
        timeout = _TICK if oldest is None else min(_TICK, max(0.0, oldest.deadline - now))
        for fd, events in self._epoll.poll(timeout):
            if fd == self._wake_r:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
                continue
            self._check(fd, events)
        now = self._clock()
        with self._lock:
            for entry in [e for e in self._pending.values() if e.deadline <= now and not e.complete]:
                self._drop(entry, "no A-ASSOCIATE-RQ within the ARTIM timeout")
            for address in [a for a, e in self._live.items() if e.sock.fileno() < 0]:
                del self._live[address]  # closed by pynetdicom without an EVT_CONN_CLOSE
            self._hand_over(now)
        self.heartbeat = now
        if now >= self._next_summary:
            self._summarize(now)

    def _check(self, fd: int, events: int) -> None:
        with self._lock:
            entry = self._pending.get(fd)
            if entry is None or entry.complete:
                return
            try:
                got = entry.sock.recv_into(self._peek, len(self._peek), socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                got = -1
            except OSError:
                self._drop(entry, "connection error")
                return
            hung_up = got == 0 or bool(events & (select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR))
            if got > 0 and self._peek[0] != _A_ASSOCIATE_RQ:
                self._drop(entry, "not an A-ASSOCIATE-RQ")
            elif got >= 6:
                (length,) = struct.unpack_from(">L", self._peek, 2)
                if length > self._limits.max_request_bytes:
                    self._drop(entry, "A-ASSOCIATE-RQ too long")
                elif got >= 6 + length:
                    entry.complete = True
                    self._ready.append(fd)
                elif hung_up:
                    self._drop(entry, "hung up mid-request")
            elif hung_up:
                self._drop(entry, "hung up before associating")

    def _hand_over(self, now: float) -> None:
        """Dispatch complete requests while there is room (lock held)."""
        while self._ready:
            entry = self._pending.get(self._ready[0])
            if entry is None or not entry.complete:
                self._ready.popleft()
                continue
            if len(self._live) >= self._max_live and not self._evict_live(now):
                return
            self._ready.popleft()
            del self._pending[entry.sock.fileno()]
            with contextlib.suppress(OSError):
                self._epoll.unregister(entry.sock.fileno())
            try:
                entry.sock.settimeout(self._network_timeout)
            except OSError:
                entry.sock.close()
                continue
            self._live[entry.address] = _Live(entry.sock, now)
            try:
                self._dispatch(entry.sock, entry.address)
            except Exception:
                LOG.exception("could not hand the connection from %s to the SCP", entry.address[0])
                self._live.pop(entry.address, None)
                entry.sock.close()

    def _evict_live(self, now: float) -> bool:
        """Shut down the oldest handed-over connection without an association (lock held)."""
        for address, entry in self._live.items():
            if not entry.associated and now - entry.since >= _NEGOTIATION_GRACE:
                with contextlib.suppress(OSError):
                    entry.sock.shutdown(socket.SHUT_RDWR)
                del self._live[address]
                self._closed["no association after the request, room needed"] += 1
                return True
        return False

    def _evict_for(self, source: str) -> None:
        """Make room in the pool for one more connection from ``source`` (lock held)."""
        same = [e for e in self._pending.values() if e.address[0] == source]
        if len(same) >= self._limits.max_pending_per_source:
            self._drop(same[0], f"over {self._limits.max_pending_per_source} pending from one source")
        if len(self._pending) >= self._limits.max_pending:
            self._drop(next(iter(self._pending.values())), f"over {self._limits.max_pending} pending")

    def _drop(self, entry: _Pending, why: str | None) -> None:
        """Forget and close a pooled connection (lock held); ``why`` None: at stop, not counted."""
        fd = entry.sock.fileno()
        self._pending.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)
        with contextlib.suppress(OSError):
            entry.sock.close()
        if why is not None:
            self._closed[why] += 1
            self._closed[f"source {entry.address[0]}"] += 1

    def _summarize(self, now: float) -> None:
        with self._lock:
            closed, self._closed = self._closed, Counter()
        self._next_summary = now + _SUMMARY_EVERY
        reasons = {k: v for k, v in closed.items() if not k.startswith("source ")}
        if reasons:
            sources = [(k[7:], v) for k, v in closed.most_common() if k.startswith("source ")][:5]
            LOG.warning("closed %d connection(s) that did not associate in the last %.0f s: %s; "
                        "most from %s", sum(reasons.values()), _SUMMARY_EVERY,
                        ", ".join(f"{v} {k}" for k, v in reasons.items()),
                        ", ".join(f"{s} ({n})" for s, n in sources))


class GatedServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server with a :class:`Gate` in front.

    Uses only socketserver's documented hooks: ``process_request`` puts the accepted socket
    into the gate (whose thread later calls the stock ``process_request``, which starts the
    connection's thread), ``service_actions`` records that the accept loop turns, and
    ``shutdown`` stops the accept loop without pynetdicom's AE bookkeeping (the server was made
    by :meth:`AE.make_server`, not ``start_server``).
    """

    daemon_threads = True
    #: listen() backlog: socketserver's 5 overflows in a burst of connections, and a dropped SYN
    #: costs the sender a 1-3 s retransmission even when the gate would admit it at once.
    request_queue_size = 128
    gate: Gate
    #: Monotonic time of the accept loop's last turn (the watchdog checks it).
    heartbeat: float = 0.0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.gate.admit(request, client_address)

    def hand_over(self, sock: socket.socket, address: Address) -> None:
        """Start pynetdicom's handling of ``sock`` (the gate's ``dispatch``)."""
        super().process_request(sock, address)

    def service_actions(self) -> None:
        super().service_actions()
        self.heartbeat = time.monotonic()

    def shutdown(self) -> None:
        socketserver.BaseServer.shutdown(self)
        self.server_close()
