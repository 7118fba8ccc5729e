"""What a job is: its states and the records kept about it. Times are UNIX seconds (UTC), floats."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobState(str, enum.Enum):
    """Life cycle of a job. Arrows are the only transitions :class:`~appliance.jobs.JobStore` allows.

    ``receiving`` -> ``ready`` -> ``running`` -> ``exporting`` -> ``sending`` -> ``done``;
    ``running``/``sending`` -> ``failed``; ``failed`` -> ``ready`` or ``exporting`` (retry).
    Any state but ``done`` -> ``cancelled`` (an operator's decision). A cancelled job stays
    cancelled: a service's later move of it is ignored (:meth:`~appliance.jobs.JobStore.set_state`).
    Operators may run ``done``, ``failed`` and ``cancelled`` jobs again (:mod:`appliance.jobs.operator`).
    """

    RECEIVING = "receiving"  #: the adapter still adds instances (quiet window not over)
    READY = "ready"  #: complete; waits for the pipeline worker
    RUNNING = "running"  #: claimed by the pipeline worker
    EXPORTING = "exporting"  #: pipeline done; results wait for the exporter
    SENDING = "sending"  #: claimed by the exporter
    DONE = "done"  #: results delivered to every destination (or there were none)
    FAILED = "failed"  #: see ``error`` and ``failed_phase``
    CANCELLED = "cancelled"  #: stopped by an operator; ``error`` says who and why


#: Allowed ``from -> to`` moves; anything else raises :class:`InvalidTransition`.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.RECEIVING: frozenset({JobState.READY, JobState.CANCELLED}),
    JobState.READY: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.EXPORTING, JobState.DONE, JobState.FAILED, JobState.READY,
                                 JobState.CANCELLED}),
    JobState.EXPORTING: frozenset({JobState.SENDING, JobState.CANCELLED}),
    JobState.SENDING: frozenset({JobState.DONE, JobState.FAILED, JobState.EXPORTING, JobState.CANCELLED}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset({JobState.READY, JobState.EXPORTING, JobState.CANCELLED}),
    JobState.CANCELLED: frozenset(),
}


class InvalidTransition(ValueError):
    """A state change the life cycle does not allow (e.g. ``done -> running``)."""


class UnknownJob(KeyError):
    """No job has this ID."""


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
    calling_address: str = ""  #: IP address of the peer that sent the first instance ("" if unknown)
    #: Destinations the next export sends to; None: all of ``destinations``. Set by an operator's
    #: "retry export" (the failed ones) or "send to" (one more destination).
    export_to: tuple[str, ...] | None = None


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
