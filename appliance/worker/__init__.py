"""The pipeline worker: runs ready jobs through their workflow's stages and hands results to the exporter.

Modules, one job each: :mod:`~appliance.worker.catalog` (workflow names -> definitions),
:mod:`~appliance.worker.publish` (the ``export`` stage: SEG into ``output/``),
:mod:`~appliance.worker.runner` (one job: stages, records, failure reasons),
:mod:`~appliance.worker.service` (the process: lock, recovery, slots, shutdown).
"""

from appliance.worker.catalog import UnknownWorkflow, WorkflowCatalog
from appliance.worker.runner import JobRunner
from appliance.worker.service import Worker

__all__ = ["JobRunner", "UnknownWorkflow", "Worker", "WorkflowCatalog"]
