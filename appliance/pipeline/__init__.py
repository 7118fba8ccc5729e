"""Pipeline stages of a job: reader -> inference -> writer, plus the runner that records them.

Typical use by a job runner::

    context = StageContext(job_dir, workflow)
    result = run_stages(default_stages(), context, on_record=store.save)

See docs/pipeline.md for the files each stage writes under ``job_dir/payload``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from appliance.pipeline.inference import InferenceStage
from appliance.pipeline.reader import ReaderStage
from appliance.pipeline.stage import PipelineResult, Stage, StageContext, StageOutput, StageRecord, run_stages
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
                   inference_gate: AbstractContextManager[object] | None = None) -> list[Stage]:
    """The stages every workflow runs (:data:`~appliance.settings.workflow.STAGES`); ``triton``
    overrides the workflow's server, ``inference_gate`` is held around each request to it (see
    :class:`InferenceStage`)."""
    return [ReaderStage(), InferenceStage(triton, inference_gate), WriterStage()]
