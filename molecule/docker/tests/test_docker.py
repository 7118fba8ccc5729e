"""Verify the engine on the host: running, configured by merge, and able to run an image."""

from __future__ import annotations

import json
import re

TINY = "appliance-test/tiny:1"


def test_engine_running_and_enabled(host) -> None:  # type: ignore[no-untyped-def]
    for unit in ("docker", "containerd"):
        service = host.service(unit)
        assert service.is_running and service.is_enabled


def test_daemon_json_merged(host) -> None:  # type: ignore[no-untyped-def]
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    # The operator's keys (written before the re-install) survived the role's merge...
    assert config["registry-mirrors"] == ["https://mirror.example.org"]
    assert config["log-opts"]["labels"] == "site"
    # ...next to the role's own.
    assert config["exec-opts"] == ["native.cgroupdriver=systemd"]
    assert config["log-driver"] == "json-file"
    assert config["log-opts"]["max-size"] == "100m" and config["log-opts"]["max-file"] == "3"


def test_engine_reports_configuration(host) -> None:  # type: ignore[no-untyped-def]
    assert host.check_output("docker info --format '{{.CgroupDriver}} {{.LoggingDriver}}'") == "systemd json-file"


def test_containerd_imports_dropins(host) -> None:  # type: ignore[no-untyped-def]
    assert 'imports = ["/etc/containerd/conf.d/*.toml"]' in host.file("/etc/containerd/config.toml").content_string
    assert host.file("/etc/containerd/conf.d").is_directory
    assert host.run("ctr version").rc == 0


def test_containerd_base_config_owned_with_cri_enabled(host) -> None:  # type: ignore[no-untyped-def]
    config = host.file("/etc/containerd/config.toml").content_string
    assert "Base config owned by the docker role of the appliance." in config
    assert re.search(r"(?m)^disabled_plugins = \[\]$", config)
    # The config version the installed containerd reads: 3 for 2.x, 2 for 1.x.
    major = int(re.search(r"\sv?(\d+)\.\d+\.\d+", host.check_output("containerd --version")).group(1))
    assert re.search(rf"(?m)^version = {3 if major >= 2 else 2}$", config)
    # containerd.io's packaged config (written before the install) was kept, once, and no longer applies.
    backup = host.file("/etc/containerd/config.toml.orig")
    assert backup.exists and 'disabled_plugins = ["cri"]' in backup.content_string
    assert not host.run("ls /etc/containerd/config.toml.*~").stdout.strip()  # no dated second backup
    dump = host.check_output("containerd config dump")
    assert not re.search(r"(?m)^disabled_plugins\s*=\s*\[[^\]]*cri", dump)
    plugins = host.check_output("ctr plugins ls")
    assert re.search(r"(?m)\scri\s.*\sok\s*$", plugins), plugins


def test_operator_in_docker_group(host) -> None:  # type: ignore[no-untyped-def]
    assert "docker" in host.user("operator").groups


def test_runs_an_imported_image(host) -> None:  # type: ignore[no-untyped-def]
    # No registry: build a one-binary image from the host's static busybox.
    host.run_expect([0], "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static")
    host.run_expect([0], "rm -rf /tmp/tiny && mkdir -p /tmp/tiny/bin && cp /bin/busybox /tmp/tiny/bin/sh")
    host.run_expect([0], f"tar -C /tmp/tiny -c . | docker import -c 'CMD [\"/bin/sh\"]' - {TINY}")
    assert host.check_output(f"docker run --rm {TINY} /bin/sh -c 'echo ok'") == "ok"
