"""Running one job: resolve its workflow, run its stages in order, record each, hand over the SEG.

Stages: the workflow's (``reader`` -> ``inference`` -> ``writer``), then ``export``
(:class:`~appliance.worker.publish.PublishStage`). Each stage gets a record in the job store as
it starts (``running``) and when it ends (``succeeded``/``failed``, end time, duration in s).
The first failure fails the job (phase ``pipeline``) with ``"<stage>: <ErrorType>: <message>"``.
All files go under the job's payload folder (see :class:`~appliance.storage.PayloadLayout`);
``payload/`` and ``output/`` are emptied first, so a retried or resumed job never mixes its
files with an earlier run's.
"""

from __future__ import annotations

import logging
import shutil
import threading
from contextlib import AbstractContextManager

from appliance.jobs import Job, LeaseLost, PipelineQueue
from appliance.pipeline import Stage, StageContext, StageRecord, default_stages, memory, run_stages
from appliance.settings import WorkerConfig, Workflow
from appliance.storage import PayloadLayout
from appliance.worker.publish import PublishStage
from appliance.workflows.catalog import UnknownWorkflow, WorkflowCatalog, triton_settings

LOG = logging.getLogger(__name__)


class JobRunner:
    """Runs claimed (``running``) jobs; thread-safe, one instance per worker process.

    Args:
        inference_gate: held around each request to Triton, shared by all jobs, so at most
            ``worker.max-concurrent-inference`` requests are in flight.
    """

    def __init__(self, queue: PipelineQueue, layout: PayloadLayout, catalog: WorkflowCatalog, config: WorkerConfig,
                 inference_gate: AbstractContextManager[object]) -> None:
        self._queue = queue
        self._layout = layout
        self._catalog = catalog
        self._config = config
        self._gate = inference_gate

    def stages(self, job: Job, workflow: Workflow) -> list[Stage]:
        """The stages ``job`` runs, the export hand-over last."""
        triton = triton_settings(workflow, self._config)
        stages = default_stages(triton, self._gate, memory.max_voxels(self._config.memory_per_job_mb))
        return [*stages, PublishStage(self._layout.output_dir(job.id))]

    def run(self, job: Job, stop: threading.Event) -> Job | None:
        """Run ``job`` (claimed by this worker, i.e. ``running``) to ``exporting``, ``failed`` or,
        when ``stop`` is set, back to ``ready`` at the next stage boundary. None when the claim was
        lost (its lease expired and another worker may run it): then nothing more is written."""
        try:
            return self._run(job, stop)
        except LeaseLost as exc:
            LOG.error("%s; leaving it", exc)
            return None

    def _run(self, job: Job, stop: threading.Event) -> Job:
        try:
            workflow = self._catalog.resolve(job.workflow)
        except UnknownWorkflow as exc:
            return self._fail(job, f"workflow: {exc}")
        for folder in (self._layout.payload_dir(job.id), self._layout.output_dir(job.id)):
            shutil.rmtree(folder, ignore_errors=True)
        context = StageContext(self._layout.job_dir(job.id), workflow,
                               input_dir=self._layout.input_dir(job.id),
                               payload_dir=self._layout.payload_dir(job.id))
        LOG.info("job %s: running workflow %s (attempt %d)", job.id, workflow.name, job.attempt)
        record_ids: dict[str, int] = {}

        def started(stage: str, at: float) -> None:
            record_ids[stage] = self._queue.start_stage(job, stage, started_at=at)

        def ended(record: StageRecord) -> None:
            self._queue.finish_stage(record_ids[record.stage], record)
            LOG.info("job %s: stage %s %s in %.2f s", job.id, record.stage, record.status, record.duration_s or 0)

        result = run_stages(self.stages(job, workflow), context, on_start=started, on_record=ended, stop=stop)
        if result.stopped:
            LOG.info("job %s: stopping at a stage boundary; back to ready", job.id)
            return self._queue.release(job)
        if not result.succeeded:
            failed = result.records[-1]
            return self._fail(job, f"{failed.stage}: {failed.detail}")
        return self._queue.hand_over(job)

    def _fail(self, job: Job, reason: str) -> Job:
        LOG.warning("job %s: failed: %s", job.id, reason)
        return self._queue.fail(job, reason)

