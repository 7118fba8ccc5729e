"""Push a generated CT study into a test host's DICOM port from this machine and wait for the SEG.

This machine is "outside the host": dcmtk's ``storescu`` sends from here to the container's address,
and dcmtk's ``storescp`` listens here (AE ``WORKSTATION``, port 11112), where the sandbox
inventory sends results. Used by ``scripts/demo`` (through ``python -m harness roundtrip``) and the
molecule ``site`` scenario.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pydicom

from appliance.phantom import PhantomSpec, write_phantom
from harness.peers import nodelay_env, system_tool

LISTEN_AE = "WORKSTATION"
LISTEN_PORT = 11112
CALLING_AE = "DEMOSCU"
APPLIANCE = "/opt/appliance/venv/bin/appliance"


def dcmtk(binary: str) -> str:
    """Path of dcmtk's ``binary`` (not pynetdicom's same-named app); raises if not installed."""
    path = system_tool(binary)
    if path is None:
        raise RuntimeError(f"dcmtk's {binary} is not installed (apt-get install dcmtk)")
    return path


def container_ip(container: str) -> str:
    """The container's address on the engine's network."""
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    out = subprocess.run(["docker", "inspect", "-f", fmt, container], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def host_exec(container: str, *argv: str) -> str:
    """Run ``argv`` in the container; returns stdout (raises with stderr on failure)."""
    out = subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {container}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def make_study(folder: Path, slices: int = 40, seed: int | None = None) -> tuple[str, list[Path]]:
    """A phantom CT series in ``folder``; returns its StudyInstanceUID and sorted slice files.

    The seed (default: the clock) makes the UIDs new, so each run is a new study for the appliance.
    """
    spec = PhantomSpec(slices=slices, seed=seed if seed is not None else int(time.time() * 1000) % 2**31)
    files = write_phantom(folder, spec)
    return files.study_uid, sorted(files.files)


@contextlib.contextmanager
def listener(folder: Path, port: int = LISTEN_PORT, ae: str = LISTEN_AE) -> Iterator[Path]:
    """dcmtk ``storescp`` receiving into ``folder`` on all interfaces while the block runs."""
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder.parent / "storescp.log").open("ab")
    proc = subprocess.Popen([dcmtk("storescp"), "-aet", ae, "-od", str(folder), str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=nodelay_env())
    try:
        time.sleep(0.3)
        if proc.poll() is not None:
            raise RuntimeError(f"storescp exited at once (port {port} taken?); see {log.name}")
        yield folder
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def push(address: str, port: int, called_ae: str, files: list[Path], calling_ae: str = CALLING_AE) -> float:
    """Send ``files`` in one association with dcmtk ``storescu``; returns the seconds it took."""
    start = time.monotonic()
    out = subprocess.run([dcmtk("storescu"), "-aet", calling_ae, "-aec", called_ae, address, str(port),
                          *map(str, files)], capture_output=True, text=True, env=nodelay_env(), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"storescu to {called_ae}@{address}:{port} failed ({out.returncode}): {out.stderr[-2000:]}")
    return time.monotonic() - start


def wait_for_seg(folder: Path, study_uid: str, timeout_s: float) -> Path:
    """The first DICOM SEG of ``study_uid`` received in ``folder`` (raises after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in sorted(folder.iterdir()):
            with contextlib.suppress(Exception):
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                if ds.Modality == "SEG" and ds.StudyInstanceUID == study_uid:
                    return path
        time.sleep(0.5)
    raise TimeoutError(f"no SEG of study {study_uid} in {folder} after {timeout_s:.0f} s")


def jobs_of_study(container: str, study_uid: str) -> list[dict[str, Any]]:
    """The appliance's jobs for ``study_uid``, in full (``appliance jobs show --json``)."""
    listed = json.loads(host_exec(container, APPLIANCE, "jobs", "list", "--json"))
    return [json.loads(host_exec(container, APPLIANCE, "jobs", "show", "--json", job["id"]))
            for job in listed if job["study_uid"] == study_uid]


@dataclass
class Report:
    """What one round trip measured (seconds from the start of the push unless named otherwise)."""

    address: str
    called_ae: str
    study_uid: str
    instances: int
    push_s: float
    seg_path: Path
    seg_after_s: float
    job: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Human-readable summary: where the SEG arrived and how long each step took."""
        out = [f"pushed {self.instances} CT instances to {self.called_ae}@{self.address} in {self.push_s:.2f} s",
               f"job {self.job.get('id', '?')} ({self.job.get('state', '?')}), "
               f"payload folder {self.job.get('id', '?')} under the storage root",
               "  waiting for the study to be complete (quiet window): "
               f"{_between(self.job.get('last_instance_at'), self.job.get('ready_at'))}"]
        for stage in self.job.get("stages", []):
            if stage["status"] == "succeeded":
                out.append(f"  {stage['stage']:<10} {stage['duration_s']:.2f} s")
        out.append(f"DICOM SEG received after {self.seg_after_s:.1f} s: {self.seg_path}")
        return out


def _between(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "?"
    return f"{(datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds():.0f} s (whole seconds)"


def roundtrip(container: str, called_ae: str, workdir: Path, port: int = 104, slices: int = 40,
              timeout_s: float = 300.0) -> Report:
    """Send a new phantom study to ``called_ae`` on ``container`` and wait for its SEG here."""
    address = container_ip(container)
    study_uid, files = make_study(workdir / "study", slices=slices)
    with listener(workdir / "received") as received:
        start = time.monotonic()
        push_s = push(address, port, called_ae, files)
        seg = wait_for_seg(received, study_uid, timeout_s)
        seg_after = time.monotonic() - start
    jobs = jobs_of_study(container, study_uid)
    return Report(address, called_ae, study_uid, len(files), push_s, seg, seg_after, jobs[-1] if jobs else {})
