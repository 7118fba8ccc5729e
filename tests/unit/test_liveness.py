"""The watchdog reflects every loop: a loop that misses its deadline withholds the ping."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from appliance import systemd


def test_an_overdue_loop_withholds_the_watchdog_ping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
        liveness = systemd.Liveness()
        sender = liveness.pulse("sender PACS #1", period=0.3)
        watchdog = systemd.Watchdog()
        watchdog.tick(liveness)
        assert sock.recv(64) == b"WATCHDOG=1"
        time.sleep(0.4)  # the sender is stuck: no beat
        assert liveness.overdue() == ["sender PACS #1"]
        watchdog.tick(liveness)
        with pytest.raises(TimeoutError):
            sock.recv(64)
        sender.beat(allow=5)  # a long association announced: alive again
        watchdog.tick(liveness)
        assert sock.recv(64) == b"WATCHDOG=1"
