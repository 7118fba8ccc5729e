"""The Storage and Verification SCP: association policy and the C-STORE/C-ECHO handlers.

Association policy (A-ASSOCIATE-RJ result/source/reason per PS3.8 9.3.4):

* called AE title not configured: rejected-permanent, service-user, *called-AE-title-not-recognized*;
* ``reject-unknown-sources`` and the calling AE title is not a source: rejected-permanent,
  service-user, *calling-AE-title-not-recognized*; the AE title is a source but not from its
  host: rejected-permanent, service-user, *no-reason-given*;
* more than ``max-associations`` at once: rejected-transient, service-provider (presentation),
  *local-limit-exceeded* (pynetdicom's own check);
* intake of the called AE title paused by an operator (the dashboard): rejected-transient,
  service-provider (presentation), *temporary-congestion*, and a log line naming the pause. An
  association already open when the pause starts finishes its transfer, so a study is not cut
  in half.

C-STORE requests are received by :mod:`~appliance.adapter.pdata` (fragments written to disk as
they arrive) or, for what it leaves to pynetdicom, by :meth:`StorageSCP._on_store`; both file
the instance through :class:`~appliance.adapter.instance.IncomingInstance`, which decides the
status: 0x0000 only once the instance is durably in its job's folder; 0xA700 (out of
resources) when it could not be written (disk full, I/O error, job store unavailable); 0xA900
when the dataset has no valid StudyInstanceUID; 0xC000 when it cannot be parsed at all or the
SOP Instance UID is not a UID. The dataset is stored as received, never decoded and re-encoded;
storage is negotiated only in the transfer syntaxes the reader decodes
(:func:`appliance.dicomnet.syntaxes.storage_syntaxes`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from io import BytesIO
from typing import TYPE_CHECKING, Any, cast

from pydicom.uid import UID, generate_uid
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from appliance import __version__
from appliance.adapter import pdata, wire
from appliance.adapter.grouping import Grouper
from appliance.adapter.instance import SUCCESS, IncomingInstance
from appliance.adapter.transport import RequestHandler, cheap_context_copies, on_new_association
from appliance.dicomnet.syntaxes import storage_syntaxes
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


def _file_header(sop_class: str, sop_instance: str, transfer_syntax: str, calling_ae: str) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group for one received instance."""
    return wire.file_header(sop_class, sop_instance, transfer_syntax, IMPLEMENTATION_CLASS_UID,
                            IMPLEMENTATION_VERSION_NAME, calling_ae)


class StorageSCP:
    """Listens on ``config.bind_address:config.port`` and files instances through ``grouper``.

    ``paused`` returns the AE titles whose intake is paused now (asked once per association).
    """

    def __init__(self, config: ScpConfig, grouper: Grouper,
                 paused: Callable[[], Collection[str]] = frozenset) -> None:
        self._config = config
        self._grouper = grouper
        self._paused = paused
        self._server: ThreadedAssociationServer | None = None
        self._thread: threading.Thread | None = None
        self._sources = {(s.ae_title, s.host_ip) for s in config.sources}
        self._source_titles = {s.ae_title for s in config.sources}

        ae = AE(ae_title=config.ae_titles[0].ae_title)
        ae.maximum_associations = config.max_associations
        ae.maximum_pdu_size = config.max_pdu_bytes
        ae.network_timeout = config.network_timeout_seconds
        ae.acse_timeout = config.network_timeout_seconds
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
                for a in self._ae.active_associations if a.is_established]

    def start(self) -> None:
        """Bind and serve on a background thread."""
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
        ]
        self._server = ThreadedAssociationServer(
            self._ae,
            (self._config.bind_address, self._config.port),
            self._ae.ae_title,
            self._ae.supported_contexts,
            evt_handlers=handlers,
            request_handler=RequestHandler,
        )
        cheap_context_copies(self._server)
        # C-STORE datasets are written as they arrive, on each association's DUL thread.
        on_new_association(self._server, lambda assoc: pdata.install(assoc, self.incoming))
        # So AE.shutdown() also stops this server, as for servers AE.start_server makes.
        self._ae._servers.append(self._server)
        self._thread = threading.Thread(target=self._server.serve_forever, name="scp-accept", daemon=True)
        self._thread.start()
        LOG.info("SCP listening on %s:%d for %s", self._config.bind_address, self.port,
                 ", ".join(a.ae_title for a in self._config.ae_titles))

    def stop(self) -> None:
        """Stop accepting, abort open associations (unacknowledged instances stay unacknowledged)."""
        self._ae.shutdown()
        if self._server is not None:
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

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
        if reject is not None:
            LOG.warning("association from %s@%s to %s rejected (result %d, source %d, reason %d)",
                        calling, address, called, *reject)
            assoc.acse.send_reject(*reject)
            evt.trigger(assoc, evt.EVT_REJECTED, {})
            assoc.kill()
            return
        # So the handlers below (and pynetdicom's logs) know which of our titles was called.
        assoc.acceptor.ae_title = called
        LOG.info("association from %s@%s to %s", calling, address, called)

    def _on_echo(self, event: Event) -> int:
        return SUCCESS

    def _on_store(self, event: Event) -> int:
        # Requests the P-DATA receiver leaves to pynetdicom (see appliance.adapter.pdata) land here.
        request = cast(C_STORE, event.request)
        dataset = request.DataSet
        assert isinstance(dataset, BytesIO)
        instance = self.incoming(event.assoc, str(event.context.transfer_syntax),
                                 str(request.AffectedSOPClassUID or ""),
                                 str(request.AffectedSOPInstanceUID or ""))
        with dataset.getbuffer() as encoded:
            instance.feed(encoded)
        return instance.finish()

    def incoming(self, assoc: Association, transfer_syntax: str, sop_class: str,
                 sop_uid: str) -> IncomingInstance:
        """A C-STORE request's instance, ready to be fed its dataset (any thread of ``assoc``)."""
        sop_uid = sop_uid.strip("\0 ")
        sop_class = sop_class.strip("\0 ")
        calling = str(assoc.requestor.ae_title).strip()
        return IncomingInstance(self._grouper, assoc.acceptor.ae_title, calling, sop_class, sop_uid,
                                transfer_syntax, _file_header(sop_class, sop_uid, transfer_syntax, calling),
                                calling_address=str(assoc.requestor.address))
