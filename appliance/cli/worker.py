"""``appliance worker --config PATH``: run the pipeline worker in the foreground (systemd-friendly).

Reads the same configuration file as the adapter (its ``worker:`` block, the job store and the
AE titles' workflow bindings). Exit status 2: the configuration or a workflow is invalid, or an
AE title's workflow does not resolve; 1: another worker already uses the job store.
"""

from __future__ import annotations

import argparse
import sys

from appliance.cli import logs
from appliance.config import AdapterConfig, ConfigError, load
from appliance.worker.catalog import WorkflowCatalog
from appliance.workflows import WorkflowError


def _load(path: str) -> tuple[AdapterConfig, WorkflowCatalog]:
    """The configuration and its workflows; ConfigError lists every problem with its key."""
    config = load(path)
    try:
        catalog = WorkflowCatalog.load(config.worker.workflows_dir)
    except WorkflowError as exc:
        raise ConfigError(exc.problems, path) from exc
    problems = catalog.check_bindings(config.dicom.scp.ae_titles)
    if problems:
        raise ConfigError(problems, path)
    return config, catalog


def _run(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    try:
        config, catalog = _load(args.config)
    except ConfigError as exc:
        print(f"appliance worker: {exc}", file=sys.stderr)
        return 2
    if args.check:
        names = ", ".join(f"{a.ae_title}->{a.workflow}" for a in config.dicom.scp.ae_titles)
        print(f"{args.config}: OK ({names})")
        return 0
    from appliance.systemd import on_stop_signals
    from appliance.worker.service import Worker

    worker = Worker(config, catalog)
    on_stop_signals(worker.request_stop)
    return worker.run()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``worker`` sub-command (``--check`` validates configuration and workflows only)."""
    p = sub.add_parser("worker", help="run the pipeline worker in the foreground", description=__doc__)
    p.add_argument("--config", required=True, help="YAML configuration file (the adapter's)")
    p.add_argument("--log-level", default="INFO", choices=logs.LEVELS)
    p.add_argument("--check", action="store_true", help="validate configuration and workflow bindings, then exit")
    p.set_defaults(func=_run)
