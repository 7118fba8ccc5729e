"""Jobs: the durable record of what the appliance received and what became of it.

A job is one group of instances (same called AE title and StudyInstanceUID) that the adapter
closed. Its ID is the name of its payload folder (see :class:`PayloadLayout`).
"""

from appliance.jobs.model import (
    TRANSITIONS,
    ExportRecord,
    InvalidTransition,
    Job,
    JobState,
    StageRecord,
    UnknownJob,
)
from appliance.jobs.store import JobStore

__all__ = [
    "TRANSITIONS",
    "ExportRecord",
    "InvalidTransition",
    "Job",
    "JobState",
    "JobStore",
    "StageRecord",
    "UnknownJob",
]
