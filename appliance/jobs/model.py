"""What a job is: its states and the records kept about it. Times are UNIX seconds (UTC), floats."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobState(str, enum.Enum):
    """Life cycle of a job. Arrows are the only transitions :class:`~appliance.jobs.JobStore` allows.

    ``receiving`` -> ``ready`` -> ``running`` -> ``exporting`` -> ``done``;
    ``running``/``exporting`` -> ``failed``; ``failed`` -> ``ready`` or ``exporting`` (retry).
    While a job is ``exporting``, each of its destinations is an :class:`ExportTask` of its own.
    Any state but ``done`` -> ``cancelled`` (an operator's decision). A cancelled job stays
    cancelled: the worker's and the exporters' later moves of it are refused (their lease is gone).
    Operators may run ``done``, ``failed`` and ``cancelled`` jobs again (:mod:`appliance.jobs.operator`).
    """

    RECEIVING = "receiving"  #: the adapter still adds instances (quiet window not over)
    READY = "ready"  #: complete; waits for the pipeline worker
    RUNNING = "running"  #: claimed by a pipeline worker (under a lease)
    EXPORTING = "exporting"  #: pipeline done; the exporters send the results (one task per destination)
    DONE = "done"  #: results delivered to every destination (or there were none)
    FAILED = "failed"  #: see ``error`` and ``failed_phase``
    CANCELLED = "cancelled"  #: stopped by an operator; ``error`` says who and why


#: Allowed ``from -> to`` moves; anything else raises :class:`InvalidTransition`.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.RECEIVING: frozenset({JobState.READY, JobState.CANCELLED}),
    JobState.READY: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.EXPORTING, JobState.DONE, JobState.FAILED, JobState.READY,
                                 JobState.CANCELLED}),
    JobState.EXPORTING: frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED}),
    # Out of done and cancelled only by an operator (run or export again, appliance.jobs.operator).
    JobState.DONE: frozenset({JobState.READY, JobState.EXPORTING}),
    JobState.FAILED: frozenset({JobState.READY, JobState.EXPORTING, JobState.CANCELLED}),
    JobState.CANCELLED: frozenset({JobState.READY, JobState.EXPORTING}),
}


class InvalidTransition(ValueError):
    """A state change the life cycle does not allow (e.g. ``done -> running``)."""


class UnknownJob(KeyError):
    """No job has this ID."""


class LeaseLost(RuntimeError):
    """This process no longer holds the claim it tried to use: its lease expired (it stalled, or lost
    the database for longer than the lease) and another process may have taken the work over."""


@dataclass(frozen=True)
class Job:
    """One job. ``id`` is also the name of its payload folder under ``storage.root``."""

    id: str
    state: JobState
    called_ae: str
    calling_ae: str
    study_uid: str
    workflow: str
    destinations: tuple[str, ...]
    version: int  #: 1 for the first job of (called AE, study); +1 for each later one
    instance_count: int
    created_at: float
    updated_at: float
    last_instance_at: float | None
    ready_at: float | None
    finished_at: float | None
    attempt: int  #: 1, +1 for each ``jobs retry``
    error: str | None
    failed_phase: str | None  #: "pipeline" or "export" when state is failed
    resumes: int = 0  #: times this attempt was resumed after a worker crash or kill
    lease_owner: str | None = None  #: ``host:pid:tag`` of the worker running it, while ``running``
    lease_expires: float | None = None  #: when that claim lapses unless renewed (database clock)
    calling_address: str = ""  #: IP address of the peer that sent the first instance ("" if unknown)


@dataclass(frozen=True)
class StageRecord:
    """What one pipeline stage did: made by the stage loop (:func:`appliance.pipeline.run_stages`),
    kept by the job store.

    ``status`` is ``running`` while the stage runs, then ``succeeded``/``failed``, or
    ``interrupted`` when a worker crash or restart cut it short. ``detail`` is the stage's notes
    joined by ``"; "``, or ``"ErrorType: message"`` when it failed. ``started_at``/``ended_at``
    are UNIX seconds and ``duration_s`` seconds (None while running, and in rows older versions
    wrote). In the job store: ``job_id``, the job's ``attempt`` and ``at``, when the row was last
    written.
    """

    stage: str
    status: str
    detail: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    duration_s: float | None = None
    job_id: str = ""
    attempt: int | None = None
    at: float | None = None


@dataclass(frozen=True)
class ExportRecord:
    """One try at sending a job's results to one destination.

    ``outcome`` is ``sent`` (all delivered), ``transient`` (will be retried), ``failed``
    (gave up: permanent error or attempts exhausted) or ``skipped`` (nothing to send).
    """

    job_id: str
    destination: str
    attempt: int
    outcome: str
    sent: int
    failed: int
    detail: str
    at: float


@dataclass(frozen=True)
class ExportTask:
    """Sending one job's results to one destination: a claimed, leased unit of the export queue.

    ``state``: ``pending`` (due at ``not_before``, UNIX seconds on the database's clock),
    ``sending`` (claimed by ``lease_owner`` until ``lease_expires``), ``sent``, ``failed`` or
    ``cancelled`` (an operator cancelled the job; an exporter sending it loses its claim).
    ``tries`` counts associations tried in this ``attempt`` of the job; ``delivered`` names the
    result files the destination already acknowledged, which are never sent again.
    """

    job_id: str
    destination: str
    attempt: int
    state: str
    tries: int
    not_before: float
    delivered: tuple[str, ...]
    lease_owner: str | None
    lease_expires: float | None
    detail: str
    updated_at: float
