"""Which export failures are worth retrying.

Transient (retried with exponential backoff): connection refused or reset, timeouts, an
association aborted or rejected-transient (e.g. the peer's association limit), and C-STORE
statuses 0xA7xx (out of resources). Permanent (given up at once): rejected-permanent (e.g. our
AE title or the called AE title is unknown to the peer), a destination missing from the
configuration, no acceptable presentation context, and any other failure status (0xA9xx
dataset mismatch, 0xCxxx cannot understand, ...).
"""

from __future__ import annotations

import enum


class Severity(str, enum.Enum):
    """How a failure is treated."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


def status_ok(status: int) -> bool:
    """Success (0x0000) or a warning (0x0001, 0xB000-0xBFFF): the peer kept the instance."""
    return status == 0x0000 or status == 0x0001 or 0xB000 <= status <= 0xBFFF


def status_severity(status: int) -> Severity:
    """Severity of a failed C-STORE status."""
    return Severity.TRANSIENT if 0xA700 <= status <= 0xA7FF else Severity.PERMANENT


def reject_severity(result: int) -> Severity:
    """Severity of an A-ASSOCIATE-RJ with ``result`` 1 (permanent) or 2 (transient)."""
    return Severity.TRANSIENT if result == 0x02 else Severity.PERMANENT
