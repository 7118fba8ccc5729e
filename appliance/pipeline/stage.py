"""The stage interface and a minimal runner that records what each stage did.

A job runner builds a :class:`StageContext` for the job folder and calls
:func:`run_stages` with the stages of the workflow; every stage reads the artifacts of the
stages before it from ``context.artifacts`` and writes its files under
``context.payload_dir/<stage name>/``. Files are the hand-over between stages, so a runner
may also run each stage in its own process.
"""

from __future__ import annotations

import abc
import datetime
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from appliance.settings.workflow import Workflow

Outcome = Literal["succeeded", "failed"]


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
class StageRecord:
    """What happened in one stage: times (UTC), duration (s), outcome, error, files and notes."""

    stage: str
    started: datetime.datetime
    ended: datetime.datetime
    duration_s: float
    outcome: Outcome
    error: str | None = None
    error_type: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, times as ISO 8601 strings."""
        return {
            "stage": self.stage,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat(),
            "duration_s": round(self.duration_s, 4),
            "outcome": self.outcome,
            "error": self.error,
            "error_type": self.error_type,
            "artifacts": self.artifacts,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class PipelineResult:
    """Records of the stages that ran (the failed one last, if any) and all artifacts."""

    records: tuple[StageRecord, ...]
    artifacts: dict[str, Path]

    @property
    def succeeded(self) -> bool:
        return all(r.outcome == "succeeded" for r in self.records)


def run_stage(stage: Stage, context: StageContext) -> StageRecord:
    """Run one stage, merge its artifacts into ``context`` and return its record; never raises
    for stage failures (the record carries the error), so a runner can always persist it."""
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    try:
        output = stage.run(context)
    except Exception as exc:  # noqa: BLE001 - any failure of a stage is recorded, not propagated
        duration = time.perf_counter() - t0
        return StageRecord(stage.name, started, datetime.datetime.now(datetime.timezone.utc), duration, "failed",
                           error=str(exc) or traceback.format_exc(limit=1), error_type=type(exc).__name__)
    duration = time.perf_counter() - t0
    context.artifacts.update(output.artifacts)
    return StageRecord(stage.name, started, datetime.datetime.now(datetime.timezone.utc), duration, "succeeded",
                       artifacts={k: str(v) for k, v in output.artifacts.items()}, notes=output.notes)


def run_stages(stages: Sequence[Stage], context: StageContext,
               on_record: Callable[[StageRecord], None] | None = None) -> PipelineResult:
    """Run ``stages`` in order, stopping at the first failure.

    Args:
        on_record: called with each record as soon as its stage ends (e.g. to update the job store).
    """
    records: list[StageRecord] = []
    for stage in stages:
        record = run_stage(stage, context)
        records.append(record)
        if on_record is not None:
            on_record(record)
        if record.outcome == "failed":
            break
    return PipelineResult(tuple(records), dict(context.artifacts))
