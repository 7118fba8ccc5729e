"""The Storage and Verification SCP: association policy, C-ECHO, and the server's wiring.

Connections first wait in the :class:`~appliance.adapter.gate.Gate` (no thread, ARTIM timeout,
pending caps per source and in all) until they have sent an A-ASSOCIATE-RQ; pynetdicom then
negotiates, with this policy (A-ASSOCIATE-RJ result/source/reason per PS3.8 9.3.4):

* called AE title not configured: rejected-permanent, service-user, *called-AE-title-not-recognized*;
* ``reject-unknown-sources`` and the calling AE title is not a source: rejected-permanent,
  service-user, *calling-AE-title-not-recognized*; the AE title is a source but not from its
  host: rejected-permanent, service-user, *no-reason-given*;
* ``max-associations`` associations already negotiated: rejected-transient, service-provider
  (presentation), *local-limit-exceeded*. Only negotiated associations count: a connection
  still waiting in the gate, or one whose association has ended, holds no slot.
* intake of the called AE title paused by an operator (the dashboard): rejected-transient,
  service-provider (presentation), *temporary-congestion*, and a log line naming the pause. An
  association already open when the pause starts finishes its transfer, so a study is not cut
  in half.

C-STORE requests are received by :mod:`~appliance.adapter.fastpath` (fragments written to disk
as they arrive) through :class:`~appliance.adapter.instance.IncomingInstance`, which decides the
status: 0x0000 only once the instance is durably in its job's folder; 0xA700 (out of resources)
when it could not be written (disk full, I/O error, job store unavailable); 0xA900 when the
dataset has no valid StudyInstanceUID; 0xC000 when it is not a whole dataset or the SOP Instance
UID is not a UID; duplicates per the duplicate policy. The dataset is stored as received, never
decoded and re-encoded; storage is negotiated only in the transfer syntaxes the reader
decodes (:func:`appliance.dicomnet.syntaxes.storage_syntaxes`).

:meth:`StorageSCP.stop` stops accepting, shuts down every connection (whatever its peer does,
so the process can stop within systemd's timeout), and aborts open associations; instances not
yet acknowledged are discarded, and their senders resend them.

With ``dicom.scp.tls`` the port speaks TLS only: the gate runs each connection's handshake
(:mod:`appliance.adapter.gate`), optionally requiring a client certificate (mutual TLS).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, cast

from pydicom.uid import UID, generate_uid
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from appliance import __version__
from appliance.adapter import fastpath, wire
from appliance.adapter.gate import Gate, GatedServer
from appliance.adapter.grouping import Grouper
from appliance.adapter.instance import SUCCESS, IncomingInstance
from appliance.adapter.limits import ReceiveLimits
from appliance.dicomnet.syntaxes import storage_syntaxes
from appliance.dicomnet.tls import server_context
from appliance.settings import ScpConfig

if TYPE_CHECKING:
    from pynetdicom.association import Association

LOG = logging.getLogger(__name__)

#: Stable Implementation Class UID of the appliance (derived, so it never changes between runs).
IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["appliance", "dicom-adapter"])
IMPLEMENTATION_VERSION_NAME = f"APPLIANCE_{__version__}"[:16]

# A-ASSOCIATE-RJ (result, source, diagnostic)
_REJECT_CALLED = (0x01, 0x01, 0x07)
_REJECT_CALLING = (0x01, 0x01, 0x03)
_REJECT_NO_REASON = (0x01, 0x01, 0x01)
_REJECT_PAUSED = (0x02, 0x03, 0x01)
_REJECT_LIMIT = (0x02, 0x03, 0x02)
#: pynetdicom's own association count includes connections that never associated and threads of
#: ended associations; the gate and :class:`_Slots` limit instead, so its check must never fire.
_PYNETDICOM_MAX_ASSOCIATIONS = 1 << 16
#: Seconds a heartbeat (accept loop, gate loop) may be old before the SCP counts as stuck.
STUCK_AFTER = 10.0
_STOP_WAIT = 5.0  # seconds for open associations to end at stop

#: Makes a server (not yet serving) receive C-STORE: ``receiver(server, start)``; see
#: :func:`appliance.adapter.fastpath.install`, the default.
Receiver = Callable[[GatedServer, "fastpath.Starter"], None]


def _file_header(sop_class: str, sop_instance: str, transfer_syntax: str, calling_ae: str) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group for one received instance."""
    return wire.file_header(sop_class, sop_instance, transfer_syntax, IMPLEMENTATION_CLASS_UID,
                            IMPLEMENTATION_VERSION_NAME, calling_ae)


class _Slots:
    """The negotiated associations, counted against ``max-associations``.

    A slot is given back when the association ends (released, aborted, connection closed); an
    association whose thread has ended, or that is released or aborted, is dropped from the
    count at the next :meth:`take` too, so a missed event cannot leak a slot.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._held: dict[int, Association] = {}

    def take(self, assoc: Association) -> bool:
        with self._lock:
            for key, held in list(self._held.items()):
                if not held.is_alive() or held.is_released or held.is_aborted:
                    del self._held[key]
            if len(self._held) >= self._limit:
                return False
            self._held[id(assoc)] = assoc
            return True

    def give_back(self, assoc: Association) -> None:
        with self._lock:
            self._held.pop(id(assoc), None)

    def held(self) -> list[Association]:
        """The associations holding a slot now."""
        with self._lock:
            return list(self._held.values())


class StorageSCP:
    """Listens on ``config.bind_address:config.port`` and files instances through ``grouper``.

    ``spill_dir`` is where a dataset whose study is not known after ``head-memory-bytes`` waits
    (an unnamed file: the storage root, so the job's file is on the same disk); ``receiver``
    replaces the hand-written receiver (the ingest benchmark measures pynetdicom's own chunked
    receive with it); ``paused`` returns the AE titles whose intake is paused now (asked once
    per association).
    """

    def __init__(self, config: ScpConfig, grouper: Grouper, *, spill_dir: str | None = None,
                 receiver: Receiver | None = None, paused: Callable[[], Collection[str]] = frozenset) -> None:
        self._config = config
        self._grouper = grouper
        self._paused = paused
        self._limits = ReceiveLimits.of(config)
        self._spill_dir = spill_dir
        self._receiver = receiver
        self._server: GatedServer | None = None
        self._gate: Gate | None = None
        self._thread: threading.Thread | None = None
        self._slots = _Slots(config.max_associations)
        self._sources = {(s.ae_title, s.host_ip) for s in config.sources}
        self._source_titles = {s.ae_title for s in config.sources}
        # Made (and its files read) now, so that a bad file stops the start, not the first sender.
        self._tls = server_context(config.tls) if config.tls is not None else None
        if self._tls is not None and receiver is not None:
            # The gate hands a TLS connection's A-ASSOCIATE-RQ to the shipped receiver's socket only.
            raise ValueError("dicom.scp.tls needs the shipped receiver")

        ae = AE(ae_title=config.ae_titles[0].ae_title)
        ae.maximum_associations = _PYNETDICOM_MAX_ASSOCIATIONS
        ae.maximum_pdu_size = config.max_pdu_bytes
        ae.network_timeout = config.network_timeout_seconds
        ae.acse_timeout = self._limits.artim_seconds
        ae.dimse_timeout = config.network_timeout_seconds
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        # Called AE titles are checked in _on_requested, against all configured titles.
        ae.require_called_aet = False
        # Only what the reader decodes: anything else is rejected at negotiation, so the sender knows.
        syntaxes = storage_syntaxes()
        for cx in StoragePresentationContexts:
            ae.add_supported_context(cast(UID, cx.abstract_syntax), syntaxes)
        if config.verification.enabled:
            ae.add_supported_context(Verification, list(config.verification.transfer_syntaxes))
        self._ae = ae
        if config.log_dimse_datasets:
            logging.getLogger("pynetdicom").setLevel(logging.DEBUG)

    @property
    def port(self) -> int:
        """The TCP port actually listened on."""
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def open_associations(self) -> list[dict[str, str]]:
        """The associations open now: calling AE title, its address, called AE title."""
        return [{"calling": str(a.requestor.ae_title).strip(), "address": str(a.requestor.address),
                 "called": str(a.acceptor.ae_title).strip()}
                for a in self._slots.held() if a.is_established]

    def start(self) -> None:
        """Bind and serve on background threads (the accept loop and the gate)."""
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_RELEASED, self._on_ended),
            (evt.EVT_ABORTED, self._on_ended),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        server = cast(GatedServer, self._ae.make_server(
            (self._config.bind_address, self._config.port), evt_handlers=handlers, server_class=GatedServer))
        limits = self._limits
        self._gate = Gate(limits, self._config.network_timeout_seconds, server.hand_over,
                          max_live=self._config.max_associations + limits.max_pending, tls=self._tls)
        server.gate = self._gate
        if self._receiver is not None:
            self._receiver(server, self.incoming)
        else:
            fastpath.install(server, self.incoming, max_pdu_bytes=self._config.max_pdu_bytes,
                             max_request_bytes=limits.max_request_bytes,
                             max_command_bytes=limits.max_command_bytes)
        self._server = server
        server.heartbeat = time.monotonic()
        self._gate.start()
        self._thread = threading.Thread(target=server.serve_forever, name="scp-accept", daemon=True)
        self._thread.start()
        LOG.info("SCP listening on %s:%d%s for %s", self._config.bind_address, self.port,
                 "" if self._tls is None else (" (TLS, client certificate required)"
                                               if self._tls.verify_mode == ssl.CERT_REQUIRED else " (TLS)"),
                 ", ".join(a.ae_title for a in self._config.ae_titles))

    def healthy(self) -> bool:
        """True while the accept loop and the gate turn (the service's watchdog asks this)."""
        if self._server is None or self._gate is None or self._thread is None:
            return False
        now = time.monotonic()
        return (self._thread.is_alive() and self._gate.alive
                and now - self._server.heartbeat < STUCK_AFTER and now - self._gate.heartbeat < STUCK_AFTER)

    def stop(self) -> None:
        """Stop accepting, end every connection, abort open associations (unacknowledged
        instances stay unacknowledged); returns within a few seconds whatever the peers do."""
        server = self._server
        if server is None:
            return
        server.shutdown()
        if self._gate is not None:
            self._gate.stop()  # the reads pynetdicom's threads block in end now
        aborting = [threading.Thread(target=assoc.abort, daemon=True) for assoc in server.active_associations]
        for thread in aborting:
            thread.start()
        deadline = time.monotonic() + _STOP_WAIT
        for thread in aborting:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(timeout=_STOP_WAIT)

    # -- handlers (run on each association's thread) --------------------------------------

    def _on_requested(self, event: Event) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        assert rq is not None  # EVT_REQUESTED fires once the A-ASSOCIATE-RQ is decoded
        called = str(rq.called_ae_title).strip()
        calling = str(rq.calling_ae_title).strip()
        address = assoc.requestor.address
        reject: tuple[int, int, int] | None = None
        if self._config.ae_title(called) is None:
            reject = _REJECT_CALLED
        elif self._config.reject_unknown_sources and (calling, address) not in self._sources:
            reject = _REJECT_CALLING if calling not in self._source_titles else _REJECT_NO_REASON
        elif called in self._paused():
            LOG.warning("association from %s@%s to %s refused: intake of %s is paused", calling, address, called,
                        called)
            reject = _REJECT_PAUSED
        elif not self._slots.take(assoc):
            reject = _REJECT_LIMIT
        if reject is not None:
            LOG.warning("association from %s@%s to %s rejected (result %d, source %d, reason %d)",
                        calling, address, called, *reject)
            assoc.acse.send_reject(*reject)
            evt.trigger(assoc, evt.EVT_REJECTED, {})
            assoc.kill()
            return
        if self._gate is not None:
            self._gate.associated((address, assoc.requestor.port))
        # So the handlers below (and pynetdicom's logs) know which of our titles was called.
        assoc.acceptor.ae_title = called
        LOG.info("association from %s@%s to %s", calling, address, called)

    def _on_echo(self, event: Event) -> int:
        return SUCCESS

    def _on_ended(self, event: Event) -> None:
        self._slots.give_back(event.assoc)

    def _on_closed(self, event: Event) -> None:
        self._slots.give_back(event.assoc)
        address = getattr(event, "address", None)  # EVT_CONN_CLOSE's documented attribute
        if self._gate is not None and address is not None:
            self._gate.closed((str(address[0]), int(address[1])))

    def incoming(self, assoc: Association, transfer_syntax: str, sop_class: str,
                 sop_uid: str) -> IncomingInstance:
        """A C-STORE request's instance, ready to be fed its dataset (any thread of ``assoc``)."""
        sop_uid = sop_uid.strip("\0 ")
        sop_class = sop_class.strip("\0 ")
        calling = str(assoc.requestor.ae_title).strip()
        return IncomingInstance(self._grouper, assoc.acceptor.ae_title, calling, sop_class, sop_uid,
                                transfer_syntax, _file_header(sop_class, sop_uid, transfer_syntax, calling),
                                head_bytes=self._limits.head_bytes, spill_dir=self._spill_dir,
                                duplicates=self._limits.duplicates, calling_address=str(assoc.requestor.address))
