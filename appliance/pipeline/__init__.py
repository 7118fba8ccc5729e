"""Pipeline stages of a job: reader -> inference -> writer, and the one loop that runs them.

Typical use (the worker's :class:`~appliance.worker.JobRunner` adds the job store's records and
its own last stage)::

    context = StageContext(job_dir, workflow)
    result = run_stages(default_stages(), context, on_record=print)
    result.succeeded, result.artifacts["seg"]

See docs/pipeline.md for the files each stage writes under ``job_dir/payload``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from appliance.jobs.model import StageRecord
from appliance.pipeline.inference import InferenceStage
from appliance.pipeline.reader import ReaderStage
from appliance.pipeline.stage import PipelineResult, Stage, StageContext, StageOutput, run_stages
from appliance.pipeline.writer import WriterStage
from appliance.settings.workflow import TritonSettings

__all__ = [
    "InferenceStage",
    "PipelineResult",
    "ReaderStage",
    "Stage",
    "StageContext",
    "StageOutput",
    "StageRecord",
    "WriterStage",
    "default_stages",
    "run_stages",
]


def default_stages(triton: TritonSettings | None = None,
                   inference_gate: AbstractContextManager[object] | None = None,
                   max_voxels: int | None = None) -> list[Stage]:
    """The stages every workflow runs (:data:`~appliance.settings.workflow.STAGES`); ``triton``
    overrides the workflow's server, ``inference_gate`` is held around each request to it (see
    :class:`InferenceStage`), ``max_voxels`` bounds the series a job reads (:class:`ReaderStage`)."""
    return [ReaderStage(max_voxels), InferenceStage(triton, inference_gate), WriterStage()]
