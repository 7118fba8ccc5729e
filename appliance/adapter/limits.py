"""The receiving side's limits against hostile peers and its duplicate policy (issue 17).

One frozen dataclass, passed to :class:`~appliance.adapter.scp.StorageSCP`; every field has the
default documented in docs/adapter.md ("Limits"). Sizes in bytes, times in seconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DuplicatePolicy(enum.Enum):
    """What happens to a second instance with a SOP Instance UID already in the open group.

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

    ``artim_seconds``
        A connection that has not sent a complete A-ASSOCIATE-RQ this long after it was accepted
        is closed (PS3.8 ARTIM). Also pynetdicom's ACSE timeout. Default 10.
    ``max_pending``
        Connections accepted but not yet associated, from all sources together. Over it, the
        oldest pending connection is closed. Default 64.
    ``max_pending_per_source``
        The same, per source IP address. Default 8.
    ``max_request_bytes``
        The largest A-ASSOCIATE-RQ PDU read (bytes); a longer one closes the connection.
        Default 65536 (128 presentation contexts take about 12 KiB).
    ``max_command_bytes``
        The largest DIMSE command set read (bytes); a longer one aborts the association.
        Default 65536 (a C-STORE-RQ's is about 200 bytes).
    ``head_bytes``
        Dataset bytes held in memory while the StudyInstanceUID is not yet known; more are
        written to an unnamed temporary file on the storage root. Default 1 MiB.
    ``duplicates``
        :class:`DuplicatePolicy`. Default keep the first.
    """

    artim_seconds: float = 10.0
    max_pending: int = 64
    max_pending_per_source: int = 8
    max_request_bytes: int = 64 << 10
    max_command_bytes: int = 64 << 10
    head_bytes: int = 1 << 20
    duplicates: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
