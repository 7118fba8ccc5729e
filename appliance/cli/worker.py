"""``appliance worker --config PATH``: run the pipeline worker in the foreground (systemd-friendly).

Reads the services' configuration file (its ``worker:`` block, the job store and the AE titles'
workflow bindings). Exit status 2: the configuration or a workflow is invalid, an AE title's
workflow does not resolve, or ``worker.workers`` jobs of ``worker.memory-per-job-mb`` do not fit in
the host's memory; 1: another worker already uses the job store.
"""

from __future__ import annotations

import argparse

from appliance.cli.service import Runnable, Service
from appliance.settings import AdapterConfig, config_problems, load_config
from appliance.settings.source import Loc
from appliance.workflows.catalog import WorkflowCatalog


def _load(path: str) -> tuple[AdapterConfig, WorkflowCatalog]:
    """The configuration and its workflows; SettingsError lists every problem with its line and key."""
    config = load_config(path)
    folder = config.worker.workflows_dir
    if folder is not None and not folder.is_dir():
        raise config_problems(path, [(("worker", "workflows-dir"), f"{folder} is not a directory")])
    catalog = WorkflowCatalog.load(folder)
    problems = catalog.check_bindings(config.dicom.scp.ae_titles)
    problems.extend(_memory_problems(config))
    if problems:
        raise config_problems(path, problems)
    return config, catalog


def _memory_problems(config: AdapterConfig) -> list[tuple[Loc, str]]:
    """The configured concurrency must fit the host: ``workers`` jobs of ``memory-per-job-mb`` each."""
    from appliance.pipeline.memory import host_memory_mb

    worker = config.worker
    need, have = worker.workers * worker.memory_per_job_mb, host_memory_mb()
    if need <= have:
        return []
    return [(("worker", "memory-per-job-mb"),
             f"{worker.workers} workers x {worker.memory_per_job_mb} MB per job need {need} MB but this host has "
             f"{have} MB: lower worker.workers or worker.memory-per-job-mb (which bounds the largest series)")]


def _build(loaded: tuple[AdapterConfig, WorkflowCatalog]) -> Runnable:
    from appliance.worker.service import Worker

    return Worker(*loaded)


def _checked(loaded: tuple[AdapterConfig, WorkflowCatalog]) -> str:
    return "(" + ", ".join(f"{a.ae_title}->{a.workflow}" for a in loaded[0].dicom.scp.ae_titles) + ")"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``worker`` sub-command (``--check`` validates configuration and workflow bindings only)."""
    Service("worker", "run the pipeline worker in the foreground", _load, _build, _checked,
            lambda loaded: loaded[0].storage).register(sub, __doc__)
