"""Helpers that run the real services (``appliance adapter``, ``exporter``) and peers (dcmtk, Orthanc) on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.peers import nodelay_env, system_tool

sys.path.insert(0, str(Path(__file__).parent))

APPLIANCE = Path(sys.executable).with_name("appliance")
START_TIMEOUT = 20.0  # seconds for the adapter to report READY=1


def free_port() -> int:
    """A TCP port nobody listens on right now (bind to 0, read it, release it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(binary: str) -> str:
    """Path of dcmtk's (not pynetdicom's) ``binary``, or skip the test with the reason."""
    path = system_tool(binary)
    if path is None:
        pytest.skip(f"{binary} not installed (apt-get install dcmtk orthanc)")
    return path


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def base_config(root: Path, port: int, **overrides: Any) -> dict[str, Any]:
    """An adapter configuration: AE titles OrganSeg/LiverSeg, sources ORTHANC/STORESCU/ECHOSCU."""
    config: dict[str, Any] = {
        "dicom": {
            "scp": {
                "port": port,
                "bind-address": "127.0.0.1",
                "ae-titles": [
                    {"ae-title": "OrganSeg", "processors": ["nvidia/clara/dicom-processor"],
                     "workflow": "organ-seg", "destinations": "none"},
                    {"ae-title": "LiverSeg", "workflow": "liver-seg", "destinations": "none"},
                ],
                "max-associations": 4,
                "network-timeout-seconds": 10,
                "verification": {"enabled": True, "transfer-syntaxes": [
                    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]},
                "log-dimse-datasets": False,
                "reject-unknown-sources": False,
                "sources": [],
            },
            "scu": {"ae-title": "ClaraSCU", "max-associations": 2, "destinations": []},
        },
        "storage": {"root": str(root / "payloads")},
        "completion": {"quiet-seconds": 1.0},
        "export": {"max-attempts": 3, "initial-backoff-seconds": 0.2, "backoff-multiplier": 2,
                   "max-backoff-seconds": 1, "timeout-seconds": 5},
    }
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config


class Adapter:
    """One ``appliance adapter`` subprocess and its files (subclasses run other sub-commands)."""

    command = "adapter"

    def __init__(self, tmp: Path, config: dict[str, Any]) -> None:
        self.tmp = tmp
        self.config = config
        self.config_path = tmp / "adapter.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.port = int(config["dicom"]["scp"]["port"])
        self.root = Path(config["storage"]["root"])
        self.log_path = tmp / f"{self.command}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Adapter:
        notify_path = self.tmp / f"notify-{self.command}-{self.starts}.sock"
        self.starts += 1
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            notify.settimeout(START_TIMEOUT)
            log = self.log_path.open("ab")
            env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
            self.proc = subprocess.Popen(
                [str(APPLIANCE), self.command, "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, env=env)
            log.close()
            try:
                message = notify.recv(4096).decode()
            except TimeoutError:
                self.kill()
                raise AssertionError(f"{self.command} did not report READY=1:\n{self.log()}") from None
        assert "READY=1" in message, message
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; return the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"{self.command} ignored SIGTERM for {timeout} s:\n{self.log()}") from None
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``appliance jobs --config ... ARGS``."""
        done = subprocess.run([str(APPLIANCE), "jobs", "--config", str(self.config_path), *args],
                              capture_output=True, text=True, timeout=30)
        if check and done.returncode != 0:
            raise AssertionError(f"appliance jobs {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done

    def jobs(self) -> list[dict[str, Any]]:
        return list(json.loads(self.cli("list", "--json").stdout))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(json.loads(self.cli("show", job_id, "--json").stdout))

    def wait_jobs(self, state: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            jobs = [j for j in self.jobs() if j["state"] == state]
            return jobs if len(jobs) >= count else None

        return list(wait_for(ready, timeout, f"{count} job(s) {state}"))


class Exporter(Adapter):
    """One ``appliance exporter`` subprocess (same configuration file as the adapter)."""

    command = "exporter"


def storescu(port: int, files: list[Path] | tuple[Path, ...], called: str = "OrganSeg",
             calling: str = "STORESCU", *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Send ``files`` with dcmtk ``storescu``."""
    exe = need("storescu")
    return subprocess.run([exe, "-aet", calling, "-aec", called, *extra, "127.0.0.1", str(port),
                           *map(str, files)], capture_output=True, text=True, timeout=timeout,
                          env=nodelay_env())


def echoscu(port: int, called: str = "OrganSeg", calling: str = "ECHOSCU",
            *extra: str) -> subprocess.CompletedProcess[str]:
    """One C-ECHO with dcmtk ``echoscu``."""
    exe = need("echoscu")
    return subprocess.run([exe, "-aet", calling, "-aec", called, *extra, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=30, env=nodelay_env())


class Orthanc:
    """A throw-away Orthanc on loopback: DICOM port, REST port, AE title ORTHANC."""

    def __init__(self, tmp: Path, modalities: dict[str, list[Any]] | None = None, start: bool = True) -> None:
        exe = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
        if exe is None:
            pytest.skip("Orthanc not installed (apt-get install orthanc)")
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.dir = tmp
        (tmp / "config").mkdir(parents=True)
        (tmp / "config" / "orthanc.json").write_text(json.dumps({
            "Name": "test", "DicomAet": "ORTHANC", "DicomPort": self.dicom_port,
            "HttpPort": self.http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "StorageDirectory": str(tmp / "db"), "IndexDirectory": str(tmp / "db"),
            "DicomModalities": modalities or {}, "DicomScuTimeout": 10,
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True, "Plugins": [],
        }))
        self.exe = exe
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self) -> Orthanc:
        self.log = (self.dir / "orthanc.log").open("ab")
        self.proc = subprocess.Popen([self.exe, str(self.dir / "config")],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=nodelay_env())
        wait_for(self._up, 20, "Orthanc REST API")
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"Orthanc exited: {(self.dir / 'orthanc.log').read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            self.get("/system")
            return True
        return False

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str, body: bytes, content_type: str = "application/json") -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body,
                                     headers={"Content-Type": content_type}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def find_instances(self, **query: str) -> list[str]:
        """Orthanc IDs of the instances matching a DICOM query (e.g. SeriesInstanceUID=...)."""
        body = json.dumps({"Level": "Instance", "Query": query}).encode()
        return list(self.post("/tools/find", body))

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class StoreSCP:
    """dcmtk ``storescp`` on loopback (AE ``PACS``): every received instance a file of its own in
    ``folder`` (unique names, so a second copy of one instance shows), ``args`` e.g. ``+xi``."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = subprocess.Popen([need("storescp"), "-aet", "PACS", "-od", str(folder), "-uf", *args,
                                      str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=nodelay_env())
        wait_for(self._up, 10, "storescp listening")

    def _up(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def received(self) -> list[Path]:
        """The files received so far (complete ones: storescp renames nothing, so wait a moment)."""
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class BlackHole:
    """A destination that accepts TCP connections and never answers (a hung PACS, a firewall that
    swallows packets after the handshake). Holds every connection until :meth:`stop`."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.held.append(conn)

    def stop(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def stand_in_pipeline(root: Path, prepare: Callable[[Path], object] = lambda output: None) -> tuple[str, str]:
    """Stand in for the pipeline worker: claim the ready job, write a derived series (new UIDs) into
    its ``output/``, call ``prepare(output)``, hand it to the exporters; return the job ID and the
    series UID."""
    import pydicom
    from pydicom.uid import generate_uid

    from appliance.jobs import JobStore, PipelineQueue

    with JobStore(root / "jobs.sqlite3") as store:
        queue = PipelineQueue(store.db, "test", 30)
        job = queue.claim()
        assert job is not None
        out = root / job.id / "output"
        out.mkdir()
        series_uid = generate_uid()
        for path in sorted((root / job.id / "input").glob("*.dcm")):
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(out / f"{ds.SOPInstanceUID}.dcm")
        prepare(out)
        queue.hand_over(job)
        return job.id, series_uid
