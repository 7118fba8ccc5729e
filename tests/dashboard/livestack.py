"""The whole appliance live on loopback with its dashboard, for the browser tests and
benchmarks/dashboard.py: CPU Triton, adapter, worker, exporter and ``appliance dashboard`` as
subprocesses, Orthanc as the PACS, dcmtk ``storescu`` as the modality, headless Chromium
(Debian's, driven by Playwright) as the operator's browser.

AE titles: ``OrganSeg`` sends results to ``PACS`` (Orthanc, running); ``LateSeg`` (same workflow)
to ``LATE``, an Orthanc whose ports are reserved but which is started only when a test says so, so
its jobs fail at export until then.
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashkit import dashboard_config  # noqa: E402
from e2ekit import Orthanc, Stack, free_port, stack_config, storescu  # noqa: E402

from appliance.jobs import Job, JobState  # noqa: E402
from appliance.triton_local import LocalTriton, TritonStartError, server_binary  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapter"))
from adapterkit import Adapter  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
#: Headless Chromium with WebGL on the CPU (SwiftShader); no other flags are needed.
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


class DashboardProcess(Adapter):
    """One ``appliance dashboard`` subprocess (same configuration file as the other services)."""

    command = "dashboard"


def need_browser() -> Any:
    """Playwright's sync API, or skip naming what is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; scripts/setup does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright (Python) is not installed")
    return sync_playwright


class LiveStack:
    """Started by :meth:`start`, stopped by :meth:`stop` (everything it started, by PID)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._exits = ExitStack()
        self.triton: LocalTriton | None = None
        self.late: Orthanc | None = None

    def start(self) -> LiveStack:
        try:
            server_binary()
        except TritonStartError as exc:
            pytest.skip(f"tritonserver missing: {exc}")
        if shutil.which("storescu") is None:
            pytest.skip("dcmtk storescu not installed")
        try:
            self.triton = LocalTriton(workdir=self.folder / "triton", intra_op_threads=1)
            self.triton.start()
            self._exits.callback(self.triton.stop)
            self.pacs = Orthanc(_mkdir(self.folder / "pacs"))
            self._exits.callback(self.pacs.stop)
            self.late = Orthanc(_mkdir(self.folder / "late"), start=False)
            self._exits.callback(self.late.stop)
            config = stack_config(self.folder / "stack", free_port(), self.pacs.dicom_port, self.triton.ports,
                                  {"OrganSeg": "OrganSeg", "LateSeg": "OrganSeg"})
            dash = dashboard_config(self.folder / "stack" / "payloads", port=free_port())["dashboard"]
            config["dicom"]["scp"]["ae-titles"][1]["destinations"] = ["LATE"]
            config["dicom"]["scu"]["destinations"].append(
                {"name": "LATE", "host-ip": "127.0.0.1", "port": self.late.dicom_port, "ae-title": "ORTHANC"})
            config["export"] = {**config["export"], "max-attempts": 2, "initial-backoff-seconds": 0.2}
            logs = [str(self.folder / "stack" / f"{s}.log") for s in ("adapter", "worker", "exporter")]
            config["dashboard"] = {**dash, "log-files": logs}
            self.stack = Stack(self.folder / "stack", config)
            self.stack.start()
            self._exits.callback(self.stack.kill)
            self.dashboard = DashboardProcess(self.folder / "stack", config)
            self.dashboard.start()
            self._exits.callback(self.dashboard.kill)
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{config['dashboard']['port']}"
        return self

    def stop(self) -> None:
        self._exits.close()

    def results(self, job_id: str) -> Any:
        """The job's CT and segment numbers as the dashboard reads them (from its SEG)."""
        from appliance.dashboard.results import ResultCache
        from appliance.storage import PayloadLayout

        return ResultCache(PayloadLayout(self.stack.adapter.root)).get(job_id)

    def push(self, files: tuple[Path, ...], called: str = "OrganSeg") -> None:
        """Send ``files`` with storescu to ``called``."""
        sent = storescu(self.stack.port, files, called)
        assert sent.returncode == 0, sent.stderr

    def job_of(self, study_uid: str, timeout: float = 20.0) -> Job:
        return self.stack.wait_job(lambda j: j.study_uid == study_uid, timeout, f"a job of {study_uid}")

    def wait_state(self, job_id: str, state: JobState, timeout: float = 90.0) -> Job:
        return self.stack.wait_job(lambda j: j.id == job_id and j.state is state, timeout,
                                   f"job {job_id} {state.value}")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_in(page: Any, base: str, user: str, password: str) -> None:
    """Log in through the login form."""
    page.goto(f"{base}/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def now() -> float:
    return time.time()
