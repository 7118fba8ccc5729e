"""Counts over the whole job store, for metrics: jobs per state, stage durations, export tries,
instances received. Read-only; each is one query on the store's database."""

from __future__ import annotations

from appliance.jobs.database import Database
from appliance.jobs.model import JobState


def jobs_by_state(db: Database) -> dict[JobState, int]:
    """How many jobs are in each state (every state listed, zeros included)."""
    counts = {state: 0 for state in JobState}
    counts.update({JobState(state): int(n) for state, n in db.read("SELECT state, COUNT(*) FROM jobs GROUP BY state")})
    return counts


def stage_durations(db: Database) -> list[tuple[str, float]]:
    """(stage, seconds) of every finished stage run."""
    found = db.read("SELECT stage, duration_s FROM stages WHERE duration_s IS NOT NULL")
    return [(str(stage), float(seconds)) for stage, seconds in found]


def export_outcomes(db: Database) -> dict[tuple[str, str], int]:
    """Export tries per (destination, outcome)."""
    found = db.read("SELECT destination, outcome, COUNT(*) FROM exports GROUP BY destination, outcome")
    return {(str(d), str(o)): int(n) for d, o, n in found}


def instances_received(db: Database) -> int:
    """Instances stored in all jobs (the adapter's ingest, since the store was created)."""
    found = db.read("SELECT COALESCE(SUM(instance_count), 0) FROM jobs")
    return int(found[0][0]) if found else 0
