"""Jobs: the durable record of what the appliance received and what became of it.

A job is one group of instances (same called AE title and StudyInstanceUID) that the adapter
closed. Its ID is the name of its payload folder (see :class:`PayloadLayout`).

* :mod:`~appliance.jobs.store`: the job store the services share;
* :mod:`~appliance.jobs.operator`: what an operator does to jobs (cancel, run or export again);
* :mod:`~appliance.jobs.control`: intake pauses per AE title, service heartbeats, the audit log.
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
