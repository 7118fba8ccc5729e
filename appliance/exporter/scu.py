"""Send files to one destination over one association.

Each file is offered in its own transfer syntax and, in a second presentation context, in Explicit
and Implicit VR Little Endian. A file goes as stored whenever the destination accepts its own
syntax; only when it accepts neither but a little-endian one is the file decoded (decompressed
if need be) and sent in that syntax, so a PACS that takes only Implicit VR Little Endian still
gets the results. Files in Explicit VR Big Endian (retired) are never converted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.association import Association

from appliance.dicomnet import nodelay, requestor
from appliance.exporter.policy import Severity, reject_severity, status_ok, status_severity
from appliance.settings import DestinationConfig

LOG = logging.getLogger(__name__)
_MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255
#: The syntaxes every file is also offered in, preferred first.
LITTLE_ENDIAN = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


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


def _requested(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Presentation contexts: each (SOP class, own syntax), then per SOP class the little-endian
    syntaxes none of its files has, as one context the destination picks from."""
    contexts = [(sop_class, [syntax]) for sop_class, syntax in pairs]
    for sop_class in sorted({sop for sop, _ in pairs}):
        fallback = [str(ts) for ts in LITTLE_ENDIAN if (sop_class, ts) not in pairs]
        if fallback:
            contexts.append((sop_class, fallback))
    return contexts


def _converted(path: Path, syntax: str) -> Dataset:
    """The file's dataset, ready to be encoded in the little-endian ``syntax`` by pynetdicom."""
    ds = dcmread(path)
    own = UID(ds.file_meta.TransferSyntaxUID)
    if own.is_compressed:
        # Now Explicit VR Little Endian (pynetdicom converts to Implicit if that was accepted); the
        # same instance in another syntax, so it keeps its SOP Instance UID (pydicom's default
        # would make a new one, and the destination would hold two instances).
        ds.decompress(generate_instance_uid=False)
    elif not own.is_little_endian:
        raise ValueError(f"{own.name} is not converted")
    return ds


def _payload(path: Path, kind: tuple[str, str], accepted: set[tuple[str, str]]) -> Path | Dataset | str:
    """The file as it is, or converted to an accepted little-endian syntax, or why it cannot go."""
    if kind in accepted:
        return path
    syntax = next((str(ts) for ts in LITTLE_ENDIAN if (kind[0], ts) in accepted), None)
    if syntax is None:
        return "no accepted presentation context for {} in {}".format(*kind)
    try:
        return _converted(path, syntax)
    except Exception as exc:
        return f"cannot convert {kind[1]} to {UID(syntax).name}: {exc}"


def send(
    destination: DestinationConfig, files: Sequence[Path], calling_ae: str, timeout: float,
    on_delivered: Callable[[Path], None] = lambda path: None,
) -> SendResult:
    """C-STORE ``files`` (DICOM Part 10) to ``destination``; ``timeout`` in seconds applies to
    connecting, association negotiation and each C-STORE response. ``on_delivered`` is called
    with each file as soon as the destination acknowledged it (an exception from it aborts the
    association and propagates)."""
    result = SendResult()
    try:
        kinds = _contexts(files)
    except Exception as exc:
        result.error, result.severity = f"cannot read result file meta: {exc}", Severity.PERMANENT
        return result
    contexts = _requested(sorted(set(kinds.values())))
    if len(contexts) > _MAX_CONTEXTS:
        result.error = f"{len(contexts)} presentation contexts, more than one association carries"
        result.severity = Severity.PERMANENT
        return result

    ae = requestor(calling_ae, timeout)
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, syntaxes)
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
            payload = _payload(path, kinds[path], accepted)
            if isinstance(payload, str):
                result.rejected[path] = payload
                continue
            status = assoc.send_c_store(payload)
            code = getattr(status, "Status", None)
            if code is None:  # no response: aborted, timed out or connection lost
                result.error, result.severity = "no C-STORE response (association lost)", Severity.TRANSIENT
                return result
            if status_ok(int(code)):
                result.delivered.append(path)
                on_delivered(path)
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
