"""Send files to one destination over one association, as stored (never decoded and re-encoded)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom.association import Association

from appliance.dicomnet import nodelay, requestor
from appliance.exporter.policy import Severity, reject_severity, status_ok, status_severity
from appliance.settings import DestinationConfig

LOG = logging.getLogger(__name__)
_MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255


@dataclass
class SendResult:
    """What one association achieved. ``error``/``severity`` describe why it stopped, if it did."""

    delivered: list[Path] = field(default_factory=list)
    rejected: dict[Path, str] = field(default_factory=dict)  #: permanently refused files
    error: str | None = None
    severity: Severity | None = None


def _contexts(files: Sequence[Path]) -> dict[Path, tuple[str, str]]:
    found: dict[Path, tuple[str, str]] = {}
    for path in files:
        meta = read_file_meta_info(path)
        found[path] = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
    return found


def send(
    destination: DestinationConfig, files: Sequence[Path], calling_ae: str, timeout: float
) -> SendResult:
    """C-STORE ``files`` (DICOM Part 10) to ``destination``; ``timeout`` in seconds applies to
    connecting, association negotiation and each C-STORE response."""
    result = SendResult()
    try:
        kinds = _contexts(files)
    except Exception as exc:
        result.error, result.severity = f"cannot read result file meta: {exc}", Severity.PERMANENT
        return result
    pairs = sorted(set(kinds.values()))
    if len(pairs) > _MAX_CONTEXTS:
        result.error = f"{len(pairs)} SOP class/transfer syntax pairs, more than one association carries"
        result.severity = Severity.PERMANENT
        return result

    ae = requestor(calling_ae, timeout)
    for sop_class, syntax in pairs:
        # Offer each file's own transfer syntax only: sending it otherwise would mean transcoding.
        ae.add_requested_context(sop_class, syntax)
    assoc: Association = ae.associate(destination.host_ip, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        if assoc.is_rejected:
            rj = assoc.acceptor.primitive
            reason = (rj.result, rj.result_source, rj.diagnostic) if rj is not None else (1, 0, 0)
            result.error = "association rejected (result {}, source {}, reason {})".format(*reason)
            result.severity = reject_severity(int(reason[0] or 1))
        else:
            result.error = "no association (connection refused, reset or timed out)"
            result.severity = Severity.TRANSIENT
        return result
    nodelay(assoc)
    try:
        accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
        for path in files:
            if kinds[path] not in accepted:
                result.rejected[path] = "no accepted presentation context for {} in {}".format(*kinds[path])
                continue
            status = assoc.send_c_store(path)
            code = getattr(status, "Status", None)
            if code is None:  # no response: aborted, timed out or connection lost
                result.error, result.severity = "no C-STORE response (association lost)", Severity.TRANSIENT
                return result
            if status_ok(int(code)):
                result.delivered.append(path)
            elif status_severity(int(code)) is Severity.TRANSIENT:
                result.error = f"C-STORE status 0x{int(code):04X} (out of resources)"
                result.severity = Severity.TRANSIENT
                return result
            else:
                result.rejected[path] = f"C-STORE status 0x{int(code):04X}"
    finally:
        if assoc.is_established:
            assoc.release()
        else:
            assoc.abort()
    if result.rejected and result.error is None:
        result.error, result.severity = f"{len(result.rejected)} file(s) refused", Severity.PERMANENT
    return result
