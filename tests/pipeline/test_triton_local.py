"""``python -m appliance.triton_local``, the command triton.service runs on CPU hosts, as systemd sees it:
its server's log on stderr (the journal), a non-zero exit when the server dies (so that
``Restart=on-failure`` restarts it), a zero exit when asked to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.triton_access import KEY_HEADER, new_key
from appliance.triton_local import free_ports, server_binary


@dataclass
class Launcher:
    process: subprocess.Popen[bytes]
    stderr: Path
    workdir: Path
    http: int

    def server_pid(self) -> int:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])


@pytest.fixture()
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    try:
        server_binary()
    except Exception as exc:  # noqa: BLE001 - any reason the wheel's server is missing
        pytest.skip(f"no tritonserver here: {exc}")
    repository = tmp_path / "models"  # no models: the server is ready at once
    repository.mkdir()
    (tmp_path / "key").write_text(new_key() + "\n")
    http, grpc, metrics = free_ports()
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "appliance.triton_local", "--repository", str(repository),
             "--workdir", str(tmp_path / "work"), "--key-file", str(tmp_path / "key"), "--http-port", str(http),
             "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
            stdout=out, stderr=err)
    running = Launcher(process, stderr, tmp_path / "work", http)
    # Ready once the launcher says so (it has then seen the server ready too).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and "tritonserver ready" not in stdout.read_text():
        time.sleep(0.2)
    assert process.poll() is None and "tritonserver ready" in stdout.read_text(), stderr.read_text()
    yield running
    if process.poll() is None:
        process.kill()
        process.wait()


def _wait(process: subprocess.Popen[bytes], seconds: float) -> int:
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the launcher was still running {seconds:.0f} s later")


def test_server_death_is_a_failure_and_its_log_is_on_stderr(launcher: Launcher) -> None:
    os.kill(launcher.server_pid(), signal.SIGKILL)
    assert _wait(launcher.process, 15) == 128 + signal.SIGKILL
    log = launcher.stderr.read_text()
    # tritonserver's own lines reach the launcher's stderr, which systemd sends to the journal.
    assert "Started HTTPService at 127.0.0.1:" in log, log[-2000:]
    assert "tritonserver exited by itself with status 137" in log
    assert not (launcher.workdir / "tritonserver.log").exists()


def test_stop_signal_is_a_clean_exit(launcher: Launcher) -> None:
    server = launcher.server_pid()
    launcher.process.send_signal(signal.SIGTERM)
    assert _wait(launcher.process, 30) == 0
    assert not Path(f"/proc/{server}").exists() or "zombie" in Path(f"/proc/{server}/status").read_text()


def test_model_control_needs_the_key(launcher: Launcher) -> None:
    index = f"http://127.0.0.1:{launcher.http}/v2/repository/index"
    with pytest.raises(urllib.error.HTTPError, match="403"):
        urllib.request.urlopen(urllib.request.Request(index, method="POST", data=b"{}"), timeout=5)
    key = (launcher.workdir.parent / "key").read_text().strip()
    request = urllib.request.Request(index, method="POST", data=b"{}", headers={KEY_HEADER: key})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200
