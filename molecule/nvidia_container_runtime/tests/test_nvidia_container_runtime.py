"""Verify the nvidia runtime registration on real engines (the toolkit install only where reachable)."""

from __future__ import annotations

import json

import pytest

REPO = "https://nvidia.github.io/libnvidia-container/stable/deb/amd64/Packages"


def test_docker_knows_the_nvidia_runtime(host) -> None:  # type: ignore[no-untyped-def]
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["runtimes"]["nvidia"] == {"path": "/usr/bin/nvidia-container-runtime", "args": []}
    assert "default-runtime" not in config  # nvidia_container_runtime_default: false
    assert config["registry-mirrors"] == ["https://mirror.example.org"]  # the operator's key stayed
    assert config["exec-opts"] == ["native.cgroupdriver=systemd"]  # and the docker role's
    runtimes = json.loads(host.check_output("docker info --format '{{json .Runtimes}}'"))
    assert "nvidia" in runtimes


def test_containerd_cri_has_the_nvidia_runtime(host) -> None:  # type: ignore[no-untyped-def]
    dump = host.check_output("containerd config dump")
    assert "runtimes.nvidia]" in dump
    assert "BinaryName = '/usr/bin/nvidia-container-runtime'" in dump or \
        'BinaryName = "/usr/bin/nvidia-container-runtime"' in dump
    assert host.service("containerd").is_running and host.service("docker").is_running


def test_toolkit_installed(host) -> None:  # type: ignore[no-untyped-def]
    if host.run("command -v nvidia-ctk").rc != 0:
        reachable = host.run(f"curl -fsI --max-time 10 {REPO}").rc == 0
        if not reachable:
            pytest.skip("nvidia-container-toolkit install not run: NVIDIA's repository is unreachable here")
        pytest.fail("the repository is reachable but nvidia-ctk is not installed")
    assert host.package("nvidia-container-toolkit").is_installed
