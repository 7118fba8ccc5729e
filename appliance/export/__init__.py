"""Exporting results: a C-STORE SCU with a bounded, recorded retry policy."""

from appliance.export.policy import Severity, reject_severity, status_ok, status_severity
from appliance.export.scu import SendResult, send
from appliance.export.worker import ExportWorker, result_files

__all__ = [
    "ExportWorker",
    "SendResult",
    "Severity",
    "reject_severity",
    "result_files",
    "send",
    "status_ok",
    "status_severity",
]
