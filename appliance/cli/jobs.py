"""``appliance jobs list|show|retry|complete|retention``: inspect and steer jobs in the job store."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import datetime, timezone
from typing import Any

from appliance.jobs import InvalidTransition, Job, JobState, JobStore, UnknownJob
from appliance.jobs.retention import freed, prunes
from appliance.settings import AdapterConfig, SettingsError, load_config


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds")


def _as_dict(job: Job) -> dict[str, Any]:
    d = dataclasses.asdict(job)
    d["state"] = job.state.value
    d["destinations"] = list(job.destinations)
    for key in ("created_at", "updated_at", "last_instance_at", "ready_at", "finished_at"):
        d[key] = _iso(d[key])
    return d


def _store(args: argparse.Namespace) -> JobStore:
    return JobStore(load_config(args.config).storage.job_store)


def _size(n: int) -> str:
    value, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def _retention_line(config: AdapterConfig, store: JobStore) -> str:
    total = freed(store.db)
    return (f"retention: {config.retention.policy.describe()}; {total.jobs} job(s) pruned so far, "
            f"{_size(total.bytes)} freed")


def _list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with JobStore(config.storage.job_store) as store:
        jobs = store.list_jobs([JobState(s) for s in args.state] if args.state else None)
        footer = _retention_line(config, store)
    if args.json:
        print(json.dumps([_as_dict(j) for j in jobs], indent=2))
        return 0
    print(f"{'JOB ID':<44} {'STATE':<10} {'INST':>5} {'AE':<16} {'WORKFLOW':<16} CREATED")
    for j in jobs:
        print(f"{j.id:<44} {j.state.value:<10} {j.instance_count:>5} {j.called_ae:<16} "
              f"{j.workflow:<16} {_iso(j.created_at)}")
    print(footer)
    return 0


def _retention(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with JobStore(config.storage.job_store) as store:
        footer = _retention_line(config, store)
        total = freed(store.db)
        latest = prunes(store.db, args.last)
    if args.json:
        policy = dataclasses.asdict(config.retention.policy)
        print(json.dumps({"policy": {**policy, "interval_seconds": config.retention.interval_seconds},
                          "pruned_jobs": total.jobs, "bytes_freed": total.bytes,
                          "prunes": [{**dataclasses.asdict(p), "started_at": _iso(p.started_at),
                                      "finished_at": _iso(p.finished_at)} for p in latest]}, indent=2))
        return 0
    print(footer)
    for p in latest:
        size = "removal unfinished" if p.bytes_freed is None else _size(p.bytes_freed)
        print(f"{_iso(p.started_at)} {p.job_id} {p.reason}: {p.detail} ({size})")
    return 0


def _show(args: argparse.Namespace) -> int:
    with _store(args) as store:
        job = store.get(args.job_id)
        stages = store.stages(job.id)
        exports = store.exports(job.id)
        tasks = store.export_tasks(job.id)
    data = _as_dict(job)
    data["stages"] = [{**dataclasses.asdict(s), "at": _iso(s.at), "started_at": _iso(s.started_at),
                       "ended_at": _iso(s.ended_at)} for s in stages]
    data["exports"] = [{**dataclasses.asdict(e), "at": _iso(e.at)} for e in exports]
    data["export_tasks"] = [{**dataclasses.asdict(t), "delivered": list(t.delivered), "updated_at": _iso(t.updated_at)}
                            for t in tasks]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key, value in data.items():
        if key in ("stages", "exports", "export_tasks"):
            continue
        print(f"{key:>17}: {value}")
    for s in stages:
        took = f" {s.duration_s:.2f} s" if s.duration_s is not None else ""
        attempt = f"attempt {s.attempt}, " if s.attempt is not None else ""
        print(f"{'stage':>17}: {s.stage} {s.status}{took} {s.detail} ({attempt}{_iso(s.at)})")
    for e in exports:
        print(f"{'export':>17}: {e.destination} try {e.attempt} {e.outcome} sent={e.sent} "
              f"failed={e.failed} {e.detail} ({_iso(e.at)})")
    for t in tasks:
        print(f"{'destination':>17}: {t.destination} {t.state} after {t.tries} try(s), "
              f"{len(t.delivered)} file(s) delivered")
    return 0


def _retry(args: argparse.Namespace) -> int:
    with _store(args) as store:
        job = store.retry(args.job_id, pipeline=args.pipeline)
    who = "the worker runs every stage again" if job.state is JobState.READY else "the exporter sends again"
    print(f"{job.id}: {job.state.value} (attempt {job.attempt}): {who}")
    return 0


def _complete(args: argparse.Namespace) -> int:
    with _store(args) as store:
        count = store.request_completion(args.study_uid)
    print(f"study {args.study_uid}: completion requested ({count} receiving job(s))")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    """Apply the job store's missing migrations (the chart's hook Job runs it before an upgrade)."""
    from appliance.jobs import SCHEMA_VERSION, StoreError, migrate, open_database

    try:
        db = open_database(load_config(args.config).storage.job_store)
        try:
            applied = migrate(db)
        finally:
            db.close()
    except StoreError as exc:
        print(exc, file=sys.stderr)
        return 1
    done = ", ".join(f"{m.version} ({m.description})" for m in applied)
    print(f"job store {db.where}: " + (f"applied {done}" if applied else f"schema version {SCHEMA_VERSION} (current)"))
    return 0


def _guarded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except SettingsError as exc:
            print(exc, file=sys.stderr)
            return 2
        except UnknownJob as exc:
            print(f"no such job: {exc.args[0]}", file=sys.stderr)
            return 1
        except InvalidTransition as exc:
            print(str(exc), file=sys.stderr)
            return 1

    return run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``jobs`` sub-command and its actions."""
    p = sub.add_parser("jobs", help="list, show, retry jobs; mark a study complete; retention")
    p.add_argument("--config", default="/etc/appliance/adapter.yaml",
                   help="adapter configuration (for the job store location)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("list", help="list jobs, oldest first")
    a.add_argument("--json", action="store_true")
    a.add_argument("--state", action="append", choices=[s.value for s in JobState],
                   help="only jobs in this state (repeatable)")
    a.set_defaults(func=_guarded(_list))
    a = actions.add_parser("show", help="one job with its stage and export records")
    a.add_argument("job_id", metavar="ID")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_guarded(_show))
    a = actions.add_parser("retry", help="run a failed job again (or only its export)")
    a.add_argument("job_id", metavar="ID")
    a.add_argument("--pipeline", action="store_true",
                   help="run the pipeline again even if only the export failed")
    a.set_defaults(func=_guarded(_retry))
    a = actions.add_parser("migrate", help="apply the job store's missing migrations, then exit")
    a.set_defaults(func=_guarded(_migrate))
    a = actions.add_parser("complete", help="mark a study complete now (ends its quiet window)")
    a.add_argument("study_uid", metavar="STUDY_UID")
    a.set_defaults(func=_guarded(_complete))
    a = actions.add_parser("retention", help="the retention policy, the space it freed, the latest prunes")
    a.add_argument("--json", action="store_true")
    a.add_argument("--last", type=int, default=20, metavar="N", help="show the N latest prunes (default 20)")
    a.set_defaults(func=_guarded(_retention))
