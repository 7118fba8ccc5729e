"""The Storage and Verification SCP: association policy and the C-STORE/C-ECHO handlers.

Association policy (A-ASSOCIATE-RJ result/source/reason per PS3.8 9.3.4):

* called AE title not configured: rejected-permanent, service-user, *called-AE-title-not-recognized*;
* ``reject-unknown-sources`` and the calling AE title is not a source: rejected-permanent,
  service-user, *calling-AE-title-not-recognized*; the AE title is a source but not from its
  host: rejected-permanent, service-user, *no-reason-given*;
* more than ``max-associations`` at once: rejected-transient, service-provider (presentation),
  *local-limit-exceeded* (pynetdicom's own check).

C-STORE status: 0x0000 only once the instance is durably in its job's folder; 0xA700 (out of
resources) when it could not be written (disk full, I/O error, job store unavailable); 0xA900
when the dataset has no valid StudyInstanceUID; 0xC000 when it cannot be parsed at all or the
SOP Instance UID is not a UID. The dataset is stored as received, never decoded and re-encoded.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from io import BytesIO
from typing import Any, cast

from pydicom.uid import UID, generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from appliance import __version__
from appliance.adapter import wire
from appliance.adapter.durable import write_durably
from appliance.adapter.grouping import INSTANCE_SUFFIX, Grouper
from appliance.adapter.identify import NotIdentifiable, Unparseable, identify, is_uid
from appliance.adapter.transport import RequestHandler, cheap_context_copies
from appliance.config import ScpConfig

LOG = logging.getLogger(__name__)

#: Stable Implementation Class UID of the appliance (derived, so it never changes between runs).
IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["appliance", "dicom-adapter"])
IMPLEMENTATION_VERSION_NAME = f"APPLIANCE_{__version__}"[:16]

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

# A-ASSOCIATE-RJ (result, source, diagnostic)
_REJECT_CALLED = (0x01, 0x01, 0x07)
_REJECT_CALLING = (0x01, 0x01, 0x03)
_REJECT_NO_REASON = (0x01, 0x01, 0x01)


def _file_header(sop_class: str, sop_instance: str, transfer_syntax: str, calling_ae: str) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group for one received instance."""
    return wire.file_header(sop_class, sop_instance, transfer_syntax, IMPLEMENTATION_CLASS_UID,
                            IMPLEMENTATION_VERSION_NAME, calling_ae)


class StorageSCP:
    """Listens on ``config.bind_address:config.port`` and files instances through ``grouper``."""

    def __init__(self, config: ScpConfig, grouper: Grouper) -> None:
        self._config = config
        self._grouper = grouper
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
        for cx in StoragePresentationContexts:
            # Every transfer syntax, compressed included: we store bytes, we never decode pixels.
            ae.add_supported_context(cast(UID, cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
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
        request = cast(C_STORE, event.request)
        sop_uid = str(request.AffectedSOPInstanceUID or "").strip("\0 ")
        sop_class = str(request.AffectedSOPClassUID or "").strip("\0 ")
        called = event.assoc.acceptor.ae_title
        calling = str(event.assoc.requestor.ae_title).strip()
        transfer_syntax = str(event.context.transfer_syntax)
        # The SOP Instance UID becomes a file name: anything but a UID could escape the folder.
        if not is_uid(sop_uid) or not is_uid(sop_class):
            LOG.warning("C-STORE from %s: invalid SOP UID(s) %r/%r", calling, sop_class, sop_uid)
            return CANNOT_UNDERSTAND
        dataset = request.DataSet
        assert isinstance(dataset, BytesIO)
        with dataset.getbuffer() as encoded:
            try:
                identity = identify(encoded, transfer_syntax)
            except NotIdentifiable as exc:
                LOG.warning("C-STORE %s from %s: %s", sop_uid, calling, exc)
                return CANNOT_UNDERSTAND if isinstance(exc, Unparseable) else DATASET_MISMATCH
            header = _file_header(sop_class, sop_uid, transfer_syntax, calling)
            try:
                with self._grouper.receiving(called, calling, identity.study_uid) as slot:
                    write_durably(slot.input_dir, sop_uid + INSTANCE_SUFFIX, (header, encoded))
                    slot.stored(sop_uid)
            except (OSError, sqlite3.Error) as exc:
                LOG.error("C-STORE %s from %s: not stored: %s", sop_uid, calling, exc)
                return OUT_OF_RESOURCES
        return SUCCESS
