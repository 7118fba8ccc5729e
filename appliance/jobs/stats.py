"""Counts over the whole job store, for metrics: jobs per state, stage durations, export tries,
instances received. Read-only; each is one query."""

from __future__ import annotations

from appliance.jobs.model import JobState
from appliance.jobs.store import JobStore


def jobs_by_state(store: JobStore) -> dict[JobState, int]:
    """How many jobs are in each state (every state listed, zeros included)."""
    with store._lock:
        rows = store._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
    counts = {state: 0 for state in JobState}
    counts.update({JobState(state): int(n) for state, n in rows})
    return counts


def stage_durations(store: JobStore) -> list[tuple[str, float]]:
    """(stage, seconds) of every finished stage run."""
    with store._lock:
        rows = store._db.execute("SELECT stage, duration_s FROM stages WHERE duration_s IS NOT NULL").fetchall()
    return [(str(stage), float(seconds)) for stage, seconds in rows]


def export_outcomes(store: JobStore) -> dict[tuple[str, str], int]:
    """Export tries per (destination, outcome)."""
    with store._lock:
        rows = store._db.execute("SELECT destination, outcome, COUNT(*) FROM exports GROUP BY 1, 2").fetchall()
    return {(str(d), str(o)): int(n) for d, o, n in rows}


def instances_received(store: JobStore) -> int:
    """Instances stored in all jobs (the adapter's ingest, since the store was created)."""
    with store._lock:
        (total,) = store._db.execute("SELECT COALESCE(SUM(instance_count), 0) FROM jobs").fetchone()
    return int(total)
