"""Find a reachable Docker engine, or start a private one (root only) and stop it by PID.

On machines whose root lacks ``CAP_SYS_RESOURCE`` (some CI sandboxes), runc cannot start
``--privileged`` containers ("unable to apply caps"). There the private engine gets a tiny
OCI runtime wrapper (:mod:`harness.runc_wrapper`) as its default runtime; on a normal host
the engine is started plainly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.paths import CACHE, RUN_DIR

CAP_SYS_RESOURCE = 24
WRAPPER_RUNTIME = "harness-runc"


@dataclass(frozen=True)
class Engine:
    """A Docker engine the harness can talk to."""

    host: str  #: value for DOCKER_HOST, e.g. ``unix:///run/appliance-harness/docker.sock``
    private: bool  #: True when this harness started it (and so must stop it)


def _socket() -> Path:
    return RUN_DIR / "docker.sock"


def _pidfile() -> Path:
    return RUN_DIR / "docker.pid"


def reachable(host: str | None) -> bool:
    """True when ``docker info`` answers on *host* (None: the client's default) within 15 s."""
    env = dict(os.environ)
    if host:
        env["DOCKER_HOST"] = host
    else:
        env.pop("DOCKER_HOST", None)
    try:
        return (
            subprocess.run(
                ["docker", "info", "--format", "{{.ServerVersion}}"],
                env=env, capture_output=True, timeout=15, check=False,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def lacks_cap_sys_resource() -> bool:
    """True when this process's bounding set lacks CAP_SYS_RESOURCE (runc then needs the wrapper)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return not (int(line.split()[1], 16) >> CAP_SYS_RESOURCE) & 1
    return False


def _running_pid() -> int | None:
    try:
        pid = int(_pidfile().read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _bridge_present() -> bool:
    # Seen once: the docker0 bridge vanished minutes after an engine restart.
    return subprocess.run(["ip", "link", "show", "docker0"], capture_output=True, check=False).returncode == 0


def _install_wrapper() -> Path:
    """Write the runc wrapper as an executable next to the engine state and return its path."""
    source = Path(__file__).with_name("runc_wrapper.py").read_text()
    runc = shutil.which("runc")
    if runc is None:
        raise SystemExit("harness: runc is not installed (apt-get install runc)")
    target = RUN_DIR / "runc-wrapper"
    # System python3: dockerd's shims run the wrapper with a minimal environment.
    target.write_text(f"#!{shutil.which('python3') or sys.executable}\n" + source.replace("@RUNC@", runc))
    target.chmod(0o755)
    return target


def start_private() -> Engine:
    """Start (or reuse) the harness's own dockerd; requires root and the docker.io package."""
    host = f"unix://{_socket()}"
    stop_private()
    if os.geteuid() != 0:
        raise SystemExit("harness: no Docker engine is reachable and only root can start a private one")
    if shutil.which("dockerd") is None:
        raise SystemExit("harness: dockerd is not installed (apt-get install docker.io containerd runc)")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    data_root = CACHE / "engine"
    data_root.mkdir(parents=True, exist_ok=True)
    cmd = [
        "dockerd", "--host", host, "--data-root", str(data_root),
        "--exec-root", str(RUN_DIR / "exec"), "--pidfile", str(_pidfile()),
    ]
    if lacks_cap_sys_resource():
        cmd += ["--add-runtime", f"{WRAPPER_RUNTIME}={_install_wrapper()}", "--default-runtime", WRAPPER_RUNTIME]
    log = (CACHE / "dockerd.log").open("ab")
    subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if reachable(host):
            return Engine(host, private=True)
        time.sleep(0.5)
    raise SystemExit(f"harness: dockerd did not answer within 60 s; see {CACHE / 'dockerd.log'}")


def stop_private(timeout: float = 30.0) -> None:
    """Stop the harness's dockerd by the PID in its pidfile (SIGTERM, then SIGKILL after *timeout* s)."""
    pid = _running_pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)


def find() -> Engine | None:
    """An engine that answers now: DOCKER_HOST, the default socket, or this harness's own."""
    private = f"unix://{_socket()}"
    configured = os.environ.get("DOCKER_HOST")
    if configured and configured != private and reachable(configured):
        return Engine(configured, private=False)
    if not configured and reachable(None):
        return Engine("unix:///var/run/docker.sock", private=False)
    if _running_pid() is not None and reachable(private) and _bridge_present():
        return Engine(private, private=True)
    return None


def ensure() -> Engine:
    """An engine to use: one that answers already (see :func:`find`), else a new private one."""
    return find() or start_private()
