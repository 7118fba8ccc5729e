"""Verify the check left the host as it was: a read-only check changes nothing."""

from __future__ import annotations

from harness.hostchecks import containerd_root


def test_images_still_on_the_small_disk(host) -> None:  # type: ignore[no-untyped-def]
    assert host.check_output("docker info --format '{{.DockerRootDir}}'") == "/mnt/imagedisk/container-data/docker"
    assert containerd_root(host) == "/mnt/imagedisk/container-data/containerd"


def test_check_wrote_nothing(host) -> None:  # type: ignore[no-untyped-def]
    assert not host.file("/mnt/imagedisk/filler").exists
    assert not host.file("/var/lib/kubelet").exists


def test_engine_still_running(host) -> None:  # type: ignore[no-untyped-def]
    assert host.service("docker").is_running and host.service("containerd").is_running
