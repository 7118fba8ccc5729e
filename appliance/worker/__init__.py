"""The pipeline worker: runs ready jobs through their workflow's stages and hands results to the exporter.

Modules, one job each (workflow names resolve through :mod:`appliance.workflows.catalog`):
:mod:`~appliance.worker.publish` (the ``export`` stage: SEG into ``output/``),
:mod:`~appliance.worker.runner` (one job: stages, records, failure reasons),
:mod:`~appliance.worker.service` (the process: lock, recovery, slots, shutdown).
"""

from appliance.worker.runner import JobRunner
from appliance.worker.service import Worker
from appliance.workflows.catalog import UnknownWorkflow, WorkflowCatalog

__all__ = ["JobRunner", "UnknownWorkflow", "Worker", "WorkflowCatalog"]
