"""Jobs: the durable record of what the appliance received and what became of it.

A job is one group of instances (same called AE title and StudyInstanceUID) that the adapter
closed. Its ID is the name of its payload folder (see :class:`~appliance.storage.PayloadLayout`).

Modules, one job each: :mod:`~appliance.jobs.model` (states, records), :mod:`~appliance.jobs.database`
(SQLite or PostgreSQL behind one interface), :mod:`~appliance.jobs.schema` (versioned migrations),
and the store split by role: :mod:`~appliance.jobs.intake` (the adapters), :mod:`~appliance.jobs.queue`
(the workers: claims, leases, stage records), :mod:`~appliance.jobs.exports` (the exporters: one
leased task per destination), :mod:`~appliance.jobs.store` (reading, operators' actions),
:mod:`~appliance.jobs.retention` (which finished jobs are removed, and the audit of it);
:mod:`~appliance.jobs.lease` (the heartbeat renewing a process's claims), :mod:`~appliance.jobs.lock`
(one process per role on SQLite);
:mod:`~appliance.jobs.operator` (what an operator does to jobs: cancel, run or export again) and
:mod:`~appliance.jobs.control` (intake pauses per AE title, service heartbeats, the audit log).
"""

from appliance.jobs.database import Database, StoreError, open_database
from appliance.jobs.exports import ExportQueue
from appliance.jobs.intake import Intake
from appliance.jobs.lease import Heartbeat, owner_id
from appliance.jobs.model import (
    TRANSITIONS,
    ExportRecord,
    ExportTask,
    InvalidTransition,
    Job,
    JobState,
    LeaseLost,
    StageRecord,
    UnknownJob,
)
from appliance.jobs.queue import PipelineQueue
from appliance.jobs.retention import Freed, Prune, Pruner, RetentionPolicy
from appliance.jobs.schema import LATEST as SCHEMA_VERSION
from appliance.jobs.schema import SchemaTooNew, migrate
from appliance.jobs.store import JobStore

__all__ = [
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "Database",
    "ExportQueue",
    "ExportRecord",
    "ExportTask",
    "Freed",
    "Heartbeat",
    "Intake",
    "InvalidTransition",
    "Job",
    "JobState",
    "JobStore",
    "LeaseLost",
    "PipelineQueue",
    "Prune",
    "Pruner",
    "RetentionPolicy",
    "SchemaTooNew",
    "StageRecord",
    "StoreError",
    "UnknownJob",
    "migrate",
    "open_database",
    "owner_id",
]
