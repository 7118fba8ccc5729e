"""The exporter service (``appliance exporter``): sends the results of ``exporting`` jobs to their
destinations with a C-STORE SCU and a bounded, recorded retry policy.

Modules, one job each: :mod:`~appliance.exporter.policy` (which failures are retried),
:mod:`~appliance.exporter.scu` (one association to one destination),
:mod:`~appliance.exporter.sender` (one destination's loop: claims, tries, backoff, records),
:mod:`~appliance.exporter.service` (the process: senders per destination, heartbeat, watchdog, shutdown).
"""

from appliance.exporter.policy import Severity, reject_severity, status_ok, status_severity
from appliance.exporter.scu import SendResult, send
from appliance.exporter.sender import Sender, result_files
from appliance.exporter.service import Exporter

__all__ = [
    "Exporter",
    "Sender",
    "SendResult",
    "Severity",
    "reject_severity",
    "result_files",
    "send",
    "status_ok",
    "status_severity",
]
