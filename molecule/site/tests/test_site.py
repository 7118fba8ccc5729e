"""Verify a host converged by site.yml with the sandbox choices."""

from __future__ import annotations

import json


def test_preflight_facts_saved(host) -> None:  # type: ignore[no-untyped-def]
    assert json.loads(host.file("/etc/ansible/facts.d/preflight.fact").content_string)["gpu_count"] == 0


def test_engine_active_with_nvidia_runtime(host) -> None:  # type: ignore[no-untyped-def]
    for unit in ("docker", "containerd"):
        assert host.service(unit).is_running and host.service(unit).is_enabled
    assert "nvidia" in json.loads(host.check_output("docker info --format '{{json .Runtimes}}'"))


def test_configs_valid(host) -> None:  # type: ignore[no-untyped-def]
    json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert host.run("containerd config dump").rc == 0
