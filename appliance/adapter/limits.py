"""The receiving side's limits against hostile peers, and its duplicate policy (issue 17).

The configurable ones come from the ``dicom.scp`` settings (:meth:`ReceiveLimits.of`; meanings and
defaults in docs/adapter.md); two are fixed, far above what any real peer sends. Sizes in bytes,
times in seconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from appliance.settings import ScpConfig

#: The largest A-ASSOCIATE-RQ (or other non-P-DATA PDU) read; 128 presentation contexts take ~12 KiB.
MAX_REQUEST_BYTES = 64 << 10
#: The largest DIMSE command set read; a C-STORE-RQ's is about 200 bytes.
MAX_COMMAND_BYTES = 64 << 10


class DuplicatePolicy(enum.Enum):
    """What happens to an instance whose SOP Instance UID is already in its open group.

    Either way the first stays as it is (never a silent replacement) and a warning is logged.
    """

    #: Acknowledge the duplicate with 0x0000 and drop it: a resend after a lost response is the
    #: usual cause, and a failure status would make the sender retry it for ever.
    KEEP_FIRST = "keep-first"
    #: Refuse the duplicate with 0x0111 (Duplicate SOP Instance, a failure status of PS3.7 Annex C).
    REFUSE = "refuse"


@dataclass(frozen=True)
class ReceiveLimits:
    """Limits of the SCP beyond ``max-associations`` and ``network-timeout-seconds``.

    ``artim_seconds``: a connection must have sent a whole A-ASSOCIATE-RQ this long after it was
    accepted (also pynetdicom's ACSE timeout). ``max_pending`` and ``max_pending_per_source``:
    connections not yet associated, in all and from one IP address; over either, the oldest is
    closed. ``head_bytes``: dataset bytes held in memory while the StudyInstanceUID is not known.
    ``duplicates``: the :class:`DuplicatePolicy`. ``max_request_bytes``, ``max_command_bytes``:
    see :data:`MAX_REQUEST_BYTES`, :data:`MAX_COMMAND_BYTES`.
    """

    artim_seconds: float
    max_pending: int
    max_pending_per_source: int
    head_bytes: int
    duplicates: DuplicatePolicy
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_command_bytes: int = MAX_COMMAND_BYTES

    @classmethod
    def of(cls, scp: ScpConfig) -> ReceiveLimits:
        """The limits the ``dicom.scp`` settings give."""
        return cls(artim_seconds=scp.artim_seconds, max_pending=scp.max_pending_connections,
                   max_pending_per_source=scp.max_pending_per_source, head_bytes=scp.head_memory_bytes,
                   duplicates=DuplicatePolicy(scp.duplicates))
