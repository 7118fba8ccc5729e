"""A job's history as one ordered list of steps, for the job page.

Steps: receiving (first to last instance), the quiet window (last instance to complete), then per
attempt the wait in the worker's queue (first attempt only: later attempts have no recorded
queue start), each pipeline stage (inference split into its wait for the model server and its
compute time, from the stage's ``inference.json`` of the latest run) and each export try per
destination. Times are UNIX seconds, durations seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from appliance.jobs import ExportRecord, Job, StageRecord


@dataclass(frozen=True)
class Step:
    """One line of the timeline. ``status``: succeeded, failed, running, interrupted, waiting, or
    an export outcome (sent, transient, failed, skipped)."""

    name: str
    status: str
    started_at: float | None
    duration_s: float | None
    detail: str = ""
    attempt: int | None = None


def inference_split(payload_dir: Path) -> dict[str, float]:
    """``queue_s`` (waiting for a free model-server slot) and ``compute_s`` (the model call) of the
    latest inference run, from its ``inference.json``; empty when there is none."""
    try:
        timings = json.loads((payload_dir / "inference" / "inference.json").read_text())["timings_s"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    split = {}
    if "gate_wait_s" in timings:
        split["queue_s"] = float(timings["gate_wait_s"])
    if "infer_s" in timings:
        split["compute_s"] = float(timings["infer_s"])
    return split


def build(job: Job, stages: list[StageRecord], exports: list[ExportRecord], payload_dir: Path) -> list[Step]:
    """The job's steps in time order (see the module docstring)."""
    steps: list[Step] = []
    last = job.last_instance_at
    steps.append(Step("receiving", "succeeded" if last else "running", job.created_at,
                      (last - job.created_at) if last else None, f"{job.instance_count} instance(s)"))
    if last is not None:
        quiet = (job.ready_at - last) if job.ready_at else None
        steps.append(Step("quiet window", "succeeded" if job.ready_at else "running", last, quiet,
                          "study complete" if job.ready_at else "waiting for more instances"))
    first = next((s for s in stages if s.started_at is not None), None)
    if job.ready_at is not None:
        waited = (first.started_at - job.ready_at) if first and first.started_at else None
        steps.append(Step("queue", "succeeded" if first else "waiting", job.ready_at, waited,
                          "waiting for a free worker slot", attempt=1))
    split = inference_split(payload_dir)
    latest = max((s.attempt or 0 for s in stages), default=0)
    for s in stages:
        detail = s.detail
        if s.stage == "inference" and split and (s.attempt or 0) == latest:
            parts = [f"{k.removesuffix('_s')} {v:.2f} s" for k, v in split.items()]
            detail = "; ".join([*parts, detail] if detail else parts)
        steps.append(Step(s.stage, s.status, s.started_at, s.duration_s, detail, s.attempt))
    for e in exports:
        steps.append(Step(f"export to {e.destination}", e.outcome, e.at, None,
                          f"try {e.attempt}: {e.sent} sent, {e.failed} failed" + (f"; {e.detail}" if e.detail else "")))
    steps.sort(key=lambda st: st.started_at if st.started_at is not None else float("inf"))
    return steps
