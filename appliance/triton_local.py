"""Run a model repository on the ``tritonserver`` binary shipped in the ``nvidia-pytriton`` wheel.

This is the CPU-only model server for tests and hosts without a GPU. The wheel's server has
only the Python backend; three things make it work (see docs/pipeline.md):

* the Python-backend stub for this interpreter's version is copied next to the backend
  library, in a backend folder of our own (the wheel's folder lacks it);
* the stub links ``libpython3.11.so`` by name, and the system's copy differs from this
  interpreter's build, so this interpreter's ``LIBDIR`` goes first in ``LD_LIBRARY_PATH``;
* the stub imports packages (numpy, onnxruntime) through the first ``python3`` on ``PATH``,
  so this interpreter's ``bin`` folder goes first in ``PATH``.

Models also need ``numpy<2`` in this environment: numpy 2 breaks Python-backend outputs.

Command line: ``python -m appliance.triton_local [--repository DIR] [--key-file FILE] [--http-port 8000 ...]``.
The server's log goes to this process's stderr (the journal, under systemd). If the server exits by
itself, so does this process, with a non-zero status (the server's, or 128 + its signal), so that
systemd's ``Restart=on-failure`` starts it again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from appliance.model_repository import Inputs, build_repository
from appliance.systemd import on_stop_signals
from appliance.triton_access import read_key, server_flags


class TritonStartError(RuntimeError):
    """The local Triton server could not be found or did not become ready."""


@dataclass(frozen=True)
class Ports:
    """TCP ports of the server's HTTP, gRPC and metrics endpoints."""

    http: int
    grpc: int
    metrics: int


def free_ports(count: int = 3) -> list[int]:
    """Ports the kernel just handed out for ``bind(("127.0.0.1", 0))``.

    All sockets stay open until every port is known, so the ports differ from each other;
    another process may still take one before the server binds it, which
    :meth:`LocalTriton.start` handles by retrying with new ports.
    """
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def pytriton_root() -> Path:
    """Folder of the ``pytriton`` package that holds ``tritonserver/`` (raises if not installed)."""
    try:
        import pytriton
    except ImportError as exc:
        raise TritonStartError("nvidia-pytriton is not installed: pip install 'nvidia-pytriton==0.7.0'") from exc
    return Path(pytriton.__file__).parent


def server_binary() -> Path:
    """Path of the ``tritonserver`` executable inside the nvidia-pytriton wheel."""
    path = pytriton_root() / "tritonserver" / "bin" / "tritonserver"
    if not path.is_file():
        raise TritonStartError(f"tritonserver binary not found at {path}")
    return path


def prepare_backends(dest: Path) -> Path:
    """Assemble ``dest/python/`` from the wheel's Python backend plus the stub for this Python."""
    root = pytriton_root() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonStartError(f"no Python-backend stub for Python {version} in {stub.parent.parent}")
    python = dest / "python"
    python.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copyfile(root / "backends" / "python" / name, python / name)
    shutil.copy2(stub, python / "triton_python_backend_stub")
    return dest


def server_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the server: this interpreter's lib and bin first (see module docstring)."""
    env = dict(os.environ if base is None else base)
    libdir = str(sysconfig.get_config_var("LIBDIR") or "")
    wheel_libs = str(pytriton_root().parent / "nvidia_pytriton.libs")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, wheel_libs, env.get("LD_LIBRARY_PATH")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


class LocalTriton:
    """A ``tritonserver`` subprocess serving ``repository`` on loopback; use as a context manager.

    Args:
        repository: model repository folder; None builds the appliance's repository into ``workdir``.
        workdir: scratch folder for backends, the built repository and ``tritonserver.log``;
            None uses a temporary folder removed on :meth:`stop`.
        ports: fixed ports; None picks free ones (so several servers can run side by side).
        startup_timeout_s: how long to wait for readiness (default 120 s).
        intra_op_threads: onnxruntime threads per model when the repository is built here.
        liver_wheel: the pyliverlesionseg wheel for a repository built here (None: pip download it).
        key: restrict model control, shared-memory registration, logging and trace settings to
            requests carrying this key (see :mod:`appliance.triton_access`); None leaves them open.
        log_to_stderr: the server writes its log to this process's stderr instead of
            ``workdir/tritonserver.log`` (for systemd, which keeps it in the journal).
        address: the address the endpoints listen on: 127.0.0.1 (the default: the worker is on this
            host), or 0.0.0.0 in a container that other pods reach through a Service.
    """

    def __init__(self, repository: str | Path | None = None, workdir: str | Path | None = None,
                 ports: Ports | None = None, startup_timeout_s: float = 120.0,
                 intra_op_threads: int = 0, liver_wheel: str | Path | None = None, key: str | None = None,
                 log_to_stderr: bool = False, address: str = "127.0.0.1") -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="triton-local-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.repository = Path(repository) if repository is not None else None
        self.fixed_ports = ports
        self.ports: Ports | None = None
        self.startup_timeout_s = startup_timeout_s
        self.intra_op_threads = intra_op_threads
        self.liver_wheel = Path(liver_wheel) if liver_wheel is not None else None
        self.address = address
        self.process: subprocess.Popen[bytes] | None = None
        self.key = key
        self.log_path: Path | None = None if log_to_stderr else self.workdir / "tritonserver.log"

    @property
    def http_url(self) -> str:
        """``127.0.0.1:PORT`` of the HTTP endpoint (tritonclient's URL form, no scheme)."""
        return f"127.0.0.1:{self._ports().http}"

    @property
    def grpc_url(self) -> str:
        """``127.0.0.1:PORT`` of the gRPC endpoint."""
        return f"127.0.0.1:{self._ports().grpc}"

    def _ports(self) -> Ports:
        if self.ports is None:
            raise TritonStartError("the server has not been started")
        return self.ports

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server log ("" when it goes to stderr)."""
        if self.log_path is None:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _log_where(self) -> str:
        return f"log {self.log_path}:\n{self.log_tail()}" if self.log_path else "its log is on stderr above"

    def exit_status(self) -> int | None:
        """The server's exit status once it has exited (128 + N when killed by signal N), else None."""
        if self.process is None or self.process.poll() is None:
            return None
        code = self.process.returncode
        return 128 - code if code < 0 else code

    def start(self) -> LocalTriton:
        """Start the server and wait until it and all its models are ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.repository is None:
            self.repository = build_repository(self.workdir / "models", intra_op_threads=self.intra_op_threads,
                                               inputs=Inputs(self.liver_wheel))
        backends = prepare_backends(self.workdir / "backends")
        attempts = 1 if self.fixed_ports else 3
        for attempt in range(attempts):
            http, grpc, metrics = free_ports() if self.fixed_ports is None else (
                self.fixed_ports.http, self.fixed_ports.grpc, self.fixed_ports.metrics)
            self.ports = Ports(http, grpc, metrics)
            self._launch(backends)
            try:
                self._wait_ready()
                return self
            except TritonStartError:
                self.stop(keep_workdir=True)
                # A port taken between free_ports() and bind(): try again with new ports.
                if attempt + 1 < attempts and "already in use" in self.log_tail(200):
                    continue
                raise
        raise AssertionError("unreachable")

    def _launch(self, backends: Path) -> None:
        ports = self._ports()
        cmd = [
            str(server_binary()),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--http-address={self.address}", f"--http-port={ports.http}",
            f"--grpc-address={self.address}", f"--grpc-port={ports.grpc}",
            f"--metrics-address={self.address}", f"--metrics-port={ports.metrics}",
            "--allow-gpu-metrics=false",
            "--exit-on-error=true",
            "--strict-readiness=true",
            # Every model at start, and models added later (`appliance models add`) on request.
            "--model-control-mode=explicit", "--load-model=*",
            # Volumes are tens to hundreds of MB: grow the stub's shared memory in big steps.
            "--backend-config=python,shm-default-byte-size=16777216",
            "--backend-config=python,shm-growth-byte-size=67108864",
            *(server_flags(self.key) if self.key else []),
        ]
        with contextlib.ExitStack() as stack:
            # None: the server inherits this process's stdout and stderr.
            log = None if self.log_path is None else stack.enter_context(open(self.log_path, "ab"))
            # A new session, so that stop() can signal the server and its backend stubs together.
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT if log else None,
                                            env=server_environment(), cwd=self.workdir, start_new_session=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise TritonStartError(
                    f"tritonserver exited with status {self.process.returncode}; {self._log_where()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TritonStartError(f"tritonserver not ready after {self.startup_timeout_s:.0f} s; {self._log_where()}")

    def stop(self, keep_workdir: bool = False) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 15 s) and remove a temporary workdir."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # SIGTERM to the server alone: it stops its backend stubs itself and removes their
            # shared-memory regions; signalling the whole group would leave them in /dev/shm.
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._tmp is not None and not keep_workdir:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve a repository in the foreground until interrupted; returns the exit status."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m appliance.triton_local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", help="model repository (default: build the appliance's into --workdir)")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary folder)")
    parser.add_argument("--key-file", help="restrict model control, shared memory, logging and trace to requests "
                                           "carrying the key in this file (default: no restriction)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--liver-wheel", help="pyliverlesionseg 0.3 wheel for a repository built here "
                                              "(default: pip download it)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="listening address of the three endpoints (default 127.0.0.1; 0.0.0.0 in a pod)")
    args = parser.parse_args(argv)
    key = read_key(args.key_file) if args.key_file else None
    server = LocalTriton(args.repository, args.workdir, Ports(args.http_port, args.grpc_port, args.metrics_port),
                         liver_wheel=args.liver_wheel, key=key, log_to_stderr=True, address=args.address)
    stop = threading.Event()
    # SIGTERM (systemd, kill) must stop the server too, not leave it running without its launcher.
    on_stop_signals(stop.set)
    try:
        server.start()
    except TritonStartError as exc:
        print(f"tritonserver did not start: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        restricted = "model control and shared memory need the key" if key else "no API restricted"
        print(f"tritonserver ready: http {server.http_url}, grpc {server.grpc_url}; {restricted}", flush=True)
        while not stop.is_set() and server.exit_status() is None:
            stop.wait(1)
        died = None if stop.is_set() else server.exit_status()
    finally:
        server.stop()
    if died is not None:
        # Not asked to stop: a failure, whatever the server's own status, so that systemd restarts it.
        print(f"tritonserver exited by itself with status {died}", file=sys.stderr, flush=True)
        return died or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
