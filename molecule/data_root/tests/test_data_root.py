"""Verify the relocation: engine and containerd on the big disk, images intact, old data kept."""

from __future__ import annotations

import json

from harness.hostchecks import containerd_root

TARGET = "/mnt/bigdisk/container-data"


def test_engine_runs_from_the_new_root(host) -> None:  # type: ignore[no-untyped-def]
    assert host.service("docker").is_running
    assert host.check_output("docker info --format '{{.DockerRootDir}}'") == f"{TARGET}/docker"


def test_containerd_runs_from_the_new_root(host) -> None:  # type: ignore[no-untyped-def]
    assert host.service("containerd").is_running
    assert containerd_root(host) == f"{TARGET}/containerd"
    # The image store really is on the big disk's filesystem.
    assert host.mount_point("/mnt/bigdisk").exists
    assert host.file(f"{TARGET}/containerd/io.containerd.content.v1.content").is_directory


def test_data_root_set_in_daemon_json_only(host) -> None:  # type: ignore[no-untyped-def]
    assert json.loads(host.file("/etc/docker/daemon.json").content_string)["data-root"] == f"{TARGET}/docker"
    # Never also as a flag: dockerd refuses to start when both are set.
    assert "--data-root" not in host.check_output("systemctl cat docker.service")
    assert "--data-root" not in host.check_output("ps -o args= -C dockerd")


def test_image_from_before_the_move_runs(host) -> None:  # type: ignore[no-untyped-def]
    assert host.check_output("docker run --rm appliance-test/moved:1 /bin/sh -c 'echo moved'") == "moved"


def test_old_directories_kept_for_rollback(host) -> None:  # type: ignore[no-untyped-def]
    assert host.file("/var/lib/docker").is_directory
    assert host.file("/var/lib/containerd/io.containerd.content.v1.content").is_directory


def test_refused_moves_left_no_trace(host) -> None:  # type: ignore[no-untyped-def]
    assert not host.file("/mnt/smalldisk/container-data").exists
    assert not host.file("/mnt/bigdisk/elsewhere").exists


def test_engine_waits_for_the_data_disk(host) -> None:  # type: ignore[no-untyped-def]
    # The target is a loop-mounted ext4 (prepare.yml): both units require its mount.
    for unit in ("containerd", "docker"):
        requires = host.check_output(f"systemctl show -p RequiresMountsFor --value {unit}.service")
        assert "/containerd" in requires and "/docker" in requires, f"{unit}: {requires}"
