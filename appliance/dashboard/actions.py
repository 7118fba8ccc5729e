"""The operator's actions, each checked, performed on the job store, and written to the audit log.

An action is refused (:class:`Refused`, with the reason the page shows) when the user's role is
too low, the job is in a state the action does not apply to, its results are missing, or a
named destination or AE title is not configured. Refusals are audited too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from appliance.dashboard.auth import Session, allowed
from appliance.dashboard.joblist import count_outputs
from appliance.jobs import InvalidTransition, JobState, JobStore, UnknownJob, control, operator
from appliance.settings import AdapterConfig
from appliance.storage import PayloadLayout


class Refused(Exception):
    """The action was not done; the message says why."""


@dataclass(frozen=True)
class Context:
    """What an action works with."""

    config: AdapterConfig
    store: JobStore
    layout: PayloadLayout


def _results(ctx: Context, job_id: str) -> None:
    if count_outputs(ctx.layout, job_id) == 0:
        raise Refused("the job has no results to send (its pipeline did not finish): retry the pipeline")


def retry_pipeline(ctx: Context, user: str, job_id: str, form: Mapping[str, str]) -> str:
    job = operator.rerun(ctx.store, job_id)
    return f"attempt {job.attempt}: the worker runs every stage again"


def retry_export(ctx: Context, user: str, job_id: str, form: Mapping[str, str]) -> str:
    _results(ctx, job_id)
    job = ctx.store.get(job_id)
    targets = operator.failed_destinations(ctx.store, job_id) if job.state is JobState.FAILED else []
    targets = targets or list(job.destinations)
    if not targets:
        raise Refused("the job has no destination ('destinations: none'): use 'send to' to pick one")
    job = operator.export_again(ctx.store, job_id, targets)
    return f"attempt {job.attempt}: sending again to {', '.join(targets)}"


def send_to(ctx: Context, user: str, job_id: str, form: Mapping[str, str]) -> str:
    name = form.get("destination", "")
    if ctx.config.dicom.scu.destination(name) is None:
        raise Refused(f"unknown destination {name!r}")
    _results(ctx, job_id)
    job = operator.export_again(ctx.store, job_id, [name])
    return f"attempt {job.attempt}: sending the results to {name}"


def cancel(ctx: Context, user: str, job_id: str, form: Mapping[str, str]) -> str:
    reason = " ".join(form.get("reason", "").split())[:200]
    operator.cancel(ctx.store, job_id, f"cancelled by {user}" + (f": {reason}" if reason else ""))
    return "cancelled"


def complete(ctx: Context, user: str, job_id: str, form: Mapping[str, str]) -> str:
    job = ctx.store.get(job_id)
    if job.state is not JobState.RECEIVING:
        raise Refused(f"the study is complete already (the job is {job.state.value})")
    count = ctx.store.request_completion(job.study_uid)
    return f"study marked complete: the adapter closes {count} receiving job(s) at its next tick"


#: Job actions by URL name: (function(context, user, job ID, form) -> message, the role needed).
JOB_ACTIONS: dict[str, tuple[Callable[[Context, str, str, Mapping[str, str]], str], str]] = {
    "retry": (retry_pipeline, "operator"),
    "retry-export": (retry_export, "operator"),
    "send": (send_to, "operator"),
    "cancel": (cancel, "operator"),
    "complete": (complete, "operator"),
}


def run_job_action(ctx: Context, session: Session, action: str, job_id: str, form: Mapping[str, str]) -> str:
    """Do ``action`` on ``job_id`` for ``session``; audit it; return the message (raise Refused)."""
    func, needed = JOB_ACTIONS[action]
    detail = " ".join(f"{k}={v}" for k, v in form.items() if k != "csrf")
    return _audited(ctx, session, action, job_id, detail, needed, lambda: func(ctx, session.user, job_id, form))


def run_intake_action(ctx: Context, session: Session, action: str, ae_title: str, form: Mapping[str, str]) -> str:
    """Pause or resume intake of ``ae_title``; audit it; return the message (raise Refused)."""

    def act() -> str:
        if ctx.config.dicom.scp.ae_title(ae_title) is None:
            raise Refused(f"{ae_title!r} is not one of our AE titles")
        if action == "pause":
            reason = " ".join(form.get("reason", "").split())[:200]
            control.pause_intake(ctx.store.db, ae_title, session.user, reason)
            return f"intake of {ae_title} paused: new associations are refused"
        was = control.resume_intake(ctx.store.db, ae_title)
        return f"intake of {ae_title} resumed" if was else f"intake of {ae_title} was not paused"

    return _audited(ctx, session, f"intake-{action}", ae_title, "", "operator", act)


def _audited(ctx: Context, session: Session, action: str, target: str, detail: str, needed: str,
             act: Callable[[], str]) -> str:
    outcome = "ok"
    try:
        if not allowed(session.role, needed):
            raise Refused(f"your role ({session.role}) may not do this; it needs {needed}")
        try:
            message = act()
        except UnknownJob:
            raise Refused(f"no such job: {target}") from None
        except InvalidTransition as exc:
            raise Refused(str(exc)) from None
        return message
    except Refused as exc:
        outcome = f"refused: {exc}"
        raise
    finally:
        control.audit(ctx.store.db, control.AuditEntry(time.time(), session.user, session.role, action, target,
                                                    outcome, detail))
