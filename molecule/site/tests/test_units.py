"""The units' limits and Triton's behaviour as systemd runs it (after test_site.py: the last test kills
Triton's server)."""

from __future__ import annotations

import time

KEY_FILE = "/var/lib/triton/api-key"


def _show(host, unit: str, *properties: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = host.check_output(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in properties))
    return dict(line.split("=", 1) for line in out.splitlines())


def test_worker_is_bounded(host) -> None:  # type: ignore[no-untyped-def]
    props = _show(host, "appliance-worker", "MemoryMax", "IPAddressDeny", "IPAddressAllow", "PrivateDevices")
    assert props["PrivateDevices"] == "yes"
    assert props["MemoryMax"].isdigit() and int(props["MemoryMax"]) > 0, props  # 50% of the host's memory
    assert "0.0.0.0/0" in props["IPAddressDeny"] and "::/0" in props["IPAddressDeny"], props
    assert set(props["IPAddressAllow"].split()) == {"127.0.0.0/8", "::1/128"}, props


def test_triton_log_is_in_the_journal(host) -> None:  # type: ignore[no-untyped-def]
    journal = host.check_output("journalctl -u triton --no-pager -o cat")
    assert 'Started HTTPService at 127.0.0.1:8000' in journal
    assert not host.file("/var/lib/triton/work/tritonserver.log").exists


def test_triton_restricts_model_control_and_shared_memory(host) -> None:  # type: ignore[no-untyped-def]
    key = host.file(KEY_FILE)
    assert (key.user, key.group, key.mode) == ("root", "appliance", 0o640)
    curl = "curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}'"
    for api in ("v2/repository/index", "v2/systemsharedmemory/region/x/unregister"):
        assert host.check_output(f"{curl} http://127.0.0.1:8000/{api}") == "403", api
        keyed = f"{curl} -H \"appliance-triton-key: $(cat {KEY_FILE})\" http://127.0.0.1:8000/{api}"
        assert host.check_output(keyed) == "200", api
    # Health, metadata and inference stay open.
    health = "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/v2/health/ready"
    assert host.check_output(health) == "200"


def test_triton_comes_back_when_its_server_dies(host) -> None:  # type: ignore[no-untyped-def]
    before = _show(host, "triton", "MainPID", "NRestarts")
    server = host.check_output(f"pgrep -P {before['MainPID']} -f tritonserver")
    host.check_output(f"kill -9 {server}")
    deadline = time.monotonic() + 180
    while True:
        now = _show(host, "triton", "MainPID", "NRestarts", "ActiveState")
        ready = host.run("curl -sf -o /dev/null http://127.0.0.1:8000/v2/health/ready").rc == 0
        if int(now["NRestarts"]) > int(before["NRestarts"]) and now["ActiveState"] == "active" and ready:
            break
        assert time.monotonic() < deadline, f"triton.service not restarted: {now}"
        time.sleep(2)
    assert "tritonserver exited by itself with status 137" in host.check_output(
        "journalctl -u triton --no-pager -o cat")
