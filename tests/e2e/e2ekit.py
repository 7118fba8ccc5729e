"""The whole appliance on loopback: adapter, worker and exporter (subprocesses), Orthanc as PACS, a real tritonserver.

Used by the end-to-end tests and ``benchmarks/pipeline.py``. Builds on the adapter tests' kit
(``tests/adapter/adapterkit.py``) for the processes, Orthanc and storescu.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapter"))
from adapterkit import (  # noqa: E402
    APPLIANCE,
    Adapter,
    Exporter,
    Orthanc,
    base_config,
    free_port,
    storescu,
    system_tool,
    wait_for,
)

from appliance.jobs import Job, JobState, JobStore, StageRecord, StoreError  # noqa: E402
from appliance.triton_local import Ports  # noqa: E402

#: Called AE title -> workflow of the stack's adapter (the shipped workflows, by name).
AE_WORKFLOWS = {"OrganSeg": "OrganSeg", "LiverSeg": "LiverSeg"}


class Worker(Adapter):
    """One ``appliance worker`` subprocess (same configuration file as the adapter)."""

    command = "worker"


def stack_config(root: Path, scp_port: int, pacs_port: int, triton: Ports, ae_workflows: dict[str, str] | None = None,
                 **worker: Any) -> dict[str, Any]:
    """Adapter + worker configuration: each AE title bound to a workflow, results to Orthanc ``PACS``.

    ``worker`` entries are ``worker:`` keys with ``_`` for ``-`` (e.g. ``max_resumes=0``).
    """
    cfg = base_config(root, scp_port)
    cfg["dicom"]["scp"]["ae-titles"] = [{"ae-title": ae, "workflow": wf, "destinations": ["PACS"]}
                                        for ae, wf in (ae_workflows or AE_WORKFLOWS).items()]
    cfg["dicom"]["scu"]["destinations"] = [
        {"name": "PACS", "host-ip": "127.0.0.1", "port": pacs_port, "ae-title": "ORTHANC"}]
    cfg["worker"] = {"workers": 2, "max-concurrent-inference": 1, "poll-seconds": 0.1,
                     "triton": {"http-url": f"127.0.0.1:{triton.http}", "grpc-url": f"127.0.0.1:{triton.grpc}"},
                     **{k.replace("_", "-"): v for k, v in worker.items()}}
    return cfg


class Stack:
    """Adapter, worker and exporter for one configuration; reads the job store directly (fast, no CLI)."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.adapter = Adapter(folder, config)
        self.worker = Worker(folder, config)
        self.exporter = Exporter(folder, config)
        self.port = self.adapter.port
        self.database = self.adapter.root / "jobs.sqlite3"

    def start(self) -> Stack:
        self.adapter.start()
        self.worker.start()
        self.exporter.start()
        return self

    def kill(self) -> None:
        self.exporter.kill()
        self.worker.kill()
        self.adapter.kill()

    def jobs(self) -> list[Job]:
        if not self.database.exists():
            return []
        try:
            with JobStore(self.database) as store:
                return store.list_jobs()
        except StoreError:  # a writer holds the lock longer than the busy timeout
            return []

    def stages(self, job_id: str) -> list[StageRecord]:
        with JobStore(self.database) as store:
            return store.stages(job_id)

    def job(self, job_id: str) -> Job:
        with JobStore(self.database) as store:
            return store.get(job_id)

    def wait_job(self, predicate: Callable[[Job], bool], timeout: float, what: str, interval: float = 0.05) -> Job:
        """The first job matching ``predicate``; fail after ``timeout`` s with the logs."""
        try:
            return wait_for(lambda: next((j for j in self.jobs() if predicate(j)), None), timeout, what, interval)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\njobs: {self.jobs()}\n--- worker log\n{self.worker.log()[-3000:]}"
                                 f"\n--- adapter log\n{self.adapter.log()[-2000:]}") from None

    def wait_finished(self, job_id: str, timeout: float) -> Job:
        """The job once it is done or failed."""
        return self.wait_job(lambda j: j.id == job_id and j.state in (JobState.DONE, JobState.FAILED), timeout,
                             f"job {job_id} done or failed")


def seg_in_orthanc(pacs: Orthanc, series_uid: str, timeout: float = 10.0) -> str:
    """Orthanc ID of the one instance of ``series_uid``, waiting up to ``timeout`` s."""
    found = wait_for(lambda: pacs.find_instances(SeriesInstanceUID=series_uid), timeout,
                     f"series {series_uid} in Orthanc")
    return str(found[0])


__all__ = ["APPLIANCE", "Exporter", "Fleet", "Orthanc", "Stack", "Worker", "free_port", "seg_in_orthanc",
           "stack_config", "storescu", "system_tool", "wait_for"]


class Fleet:
    """Adapters, workers and exporters as separate processes on one PostgreSQL job store and one
    spool folder (what several hosts sharing NFS would have); each process has its own folder for
    its configuration and log. Adapters listen on ports of their own."""

    def __init__(self, folder: Path, database_url: str, triton: Ports, pacs_port: int, adapters: int = 2,
                 workers: int = 4, exporters: int = 2, **worker: Any) -> None:
        self.spool = folder / "spool"
        self.database_url = database_url
        config = stack_config(self.spool, 0, pacs_port, triton, **worker)
        config["storage"] = {"root": str(self.spool), "database-url": database_url, "lease-seconds": 5}
        config["worker"]["workers"] = 1
        # Long enough for a killed adapter to restart and get the rest of its study, and for a sender's
        # retries after a kill on a loaded 2-core machine (4 s split a study in one of two runs).
        config["completion"]["quiet-seconds"] = 8.0
        config["dicom"]["scu"]["destinations"][0]["ae-title"] = "PACS"
        self.processes: list[Adapter] = []
        for kind, count in ((Adapter, adapters), (Worker, workers), (Exporter, exporters)):
            for n in range(count):
                own = folder / f"{kind.command}{n}"
                own.mkdir(parents=True)
                cfg = json.loads(json.dumps(config))
                cfg["dicom"]["scp"]["port"] = free_port()
                self.processes.append(kind(own, cfg))
        self.adapters = [p for p in self.processes if p.command == "adapter"]

    def start(self) -> Fleet:
        for process in self.processes:
            process.start()
        return self

    def kill(self) -> None:
        for process in self.processes:
            process.kill()

    def jobs(self) -> list[Job]:
        with JobStore(self.database_url) as store:
            return store.list_jobs()

    def logs(self) -> str:
        return "".join(f"\n--- {p.tmp.name}\n{p.log()[-1500:]}" for p in self.processes)
