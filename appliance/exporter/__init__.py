"""The exporter service (``appliance exporter``): sends the results of ``exporting`` jobs to their
destinations with a C-STORE SCU and a bounded, recorded retry policy.

Modules, one job each: :mod:`~appliance.exporter.policy` (which failures are retried),
:mod:`~appliance.exporter.scu` (one association to one destination),
:mod:`~appliance.exporter.worker` (the export loop: jobs, destinations, retries, records),
:mod:`~appliance.exporter.service` (the process: systemd notifications, watchdog, shutdown).
"""

from appliance.exporter.policy import Severity, reject_severity, status_ok, status_severity
from appliance.exporter.scu import SendResult, send
from appliance.exporter.service import Exporter
from appliance.exporter.worker import ExportWorker, result_files

__all__ = [
    "ExportWorker",
    "Exporter",
    "SendResult",
    "Severity",
    "reject_severity",
    "result_files",
    "send",
    "status_ok",
    "status_severity",
]
