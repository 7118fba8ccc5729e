"""The stage interface and the one loop that runs stages and records what each did.

A job runner builds a :class:`StageContext` for the job folder and calls :func:`run_stages`
with the stages; every stage reads the artifacts of the stages before it from
``context.artifacts`` and writes its files under ``context.payload_dir/<stage name>/``. Files are
the hand-over between stages, so a runner may also run each stage in its own process. Each
stage's outcome is a :class:`~appliance.jobs.StageRecord`, the same record the job store keeps.
"""

from __future__ import annotations

import abc
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from appliance.jobs.model import StageRecord
from appliance.settings.workflow import Workflow


@dataclass
class StageContext:
    """Everything a stage needs: the job's folders, its workflow and earlier stages' artifacts.

    Args:
        job_dir: the job's folder.
        workflow: the validated workflow the job runs.
        input_dir: DICOM instances of the job (default ``job_dir/input``).
        payload_dir: where stages write (default ``job_dir/payload``).
    """

    job_dir: Path
    workflow: Workflow
    input_dir: Path | None = None
    payload_dir: Path | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)
    """Named files produced so far, e.g. ``volume``, ``series_manifest``, ``labels``, ``seg``."""

    def __post_init__(self) -> None:
        self.job_dir = Path(self.job_dir)
        self.input_dir = Path(self.input_dir) if self.input_dir is not None else self.job_dir / "input"
        self.payload_dir = Path(self.payload_dir) if self.payload_dir is not None else self.job_dir / "payload"

    def stage_dir(self, stage: str) -> Path:
        """``payload_dir/<stage>``, created."""
        assert self.payload_dir is not None
        path = self.payload_dir / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def artifact(self, name: str, stage: str) -> Path:
        """The artifact ``name`` or a :class:`KeyError` naming the stage that should have made it."""
        try:
            return self.artifacts[name]
        except KeyError:
            raise KeyError(f"artifact {name!r} is missing: run the {stage} stage first") from None


@dataclass(frozen=True)
class StageOutput:
    """What a stage returns: its named files and human-readable notes (e.g. geometry warnings)."""

    artifacts: dict[str, Path]
    notes: tuple[str, ...] = ()


class Stage(abc.ABC):
    """A pipeline stage. Subclasses set :attr:`name` and implement :meth:`run`."""

    name: ClassVar[str]

    @abc.abstractmethod
    def run(self, context: StageContext) -> StageOutput:
        """Do the stage's work for ``context``; raise a :class:`~appliance.pipeline.errors.PipelineError`."""


@dataclass(frozen=True)
class PipelineResult:
    """Records of the stages that ran (the failed one last, if any) and all artifacts.

    ``stopped``: the loop was asked to stop before the stage after the last record.
    """

    records: tuple[StageRecord, ...]
    artifacts: dict[str, Path]
    stopped: bool = False

    @property
    def succeeded(self) -> bool:
        return not self.stopped and all(r.status == "succeeded" for r in self.records)


def run_stage(stage: Stage, context: StageContext) -> StageRecord:
    """Run one stage, merge its artifacts into ``context`` and return its record; never raises
    for stage failures (the record carries ``"ErrorType: message"``), so a runner can always persist it."""
    started = time.time()
    t0 = time.perf_counter()
    try:
        output = stage.run(context)
    except Exception as exc:  # noqa: BLE001 - any failure of a stage is recorded, not propagated
        error = str(exc) or traceback.format_exc(limit=1)
        return StageRecord(stage.name, "failed", f"{type(exc).__name__}: {error}", started, time.time(),
                           time.perf_counter() - t0)
    duration = time.perf_counter() - t0
    context.artifacts.update(output.artifacts)
    return StageRecord(stage.name, "succeeded", "; ".join(output.notes), started, time.time(), duration)


def run_stages(stages: Sequence[Stage], context: StageContext, *,
               on_start: Callable[[str, float], None] | None = None,
               on_record: Callable[[StageRecord], None] | None = None,
               stop: threading.Event | None = None) -> PipelineResult:
    """Run ``stages`` in order, stopping at the first failure: the one stage loop of the appliance.

    Args:
        on_start: called with a stage's name and start time (UNIX s) just before it runs.
        on_record: called with each record as soon as its stage ends (e.g. to update the job store).
        stop: when set, no further stage starts (the result says ``stopped``).
    """
    records: list[StageRecord] = []
    for stage in stages:
        if stop is not None and stop.is_set():
            return PipelineResult(tuple(records), dict(context.artifacts), stopped=True)
        if on_start is not None:
            on_start(stage.name, time.time())
        record = run_stage(stage, context)
        records.append(record)
        if on_record is not None:
            on_record(record)
        if record.status == "failed":
            break
    return PipelineResult(tuple(records), dict(context.artifacts))
