"""After site.yml and the uninstall playbook the host is as it was before, except the data kept on purpose.

Order of the scenario: prepare (what the host has before site.yml: Ubuntu's Docker engine, ufw with an
operator's rule, a site workflow, an orphan package and a hook that installs a package during the
next dpkg run; snapshot ``before``; site.yml with two networks allowed to DICOM; one network
removed again; data written into the image store and the appliance's data folder, both recorded),
converge (the uninstall, keeping data), idempotence (the uninstall again, changing nothing), side
effect (snapshot ``after-keep`` and the comparisons of the kept data; a site.yml run interrupted
after Triton; the uninstall with ``purge_data=true``), then these tests.
"""

from __future__ import annotations

import difflib
import json
import re

import pytest

from harness.hostchecks import apt_lists_of_other_releases, other_release_packages

SECTIONS = ["packages", "units", "etc", "holds", "users", "groups", "ports", "places"]
RECORD = "/var/tmp/uninstall"
# Installed by an apt hook during site.yml (as unattended-upgrades installs a kernel while a play
# runs): not site.yml's, so uninstall keeps it, and it shows as the one package added since "before".
UNREQUESTED = "appliance-test-unrequested"
# What the host had before site.yml and must still have: Ubuntu's engine, ufw, an orphan that a
# host-wide `apt autoremove` would take.
THERE_BEFORE = ["docker.io", "containerd", "runc", "ufw", "appliance-test-orphan"]
OPERATOR_RULE = "ufw allow from 10.99.0.0/16 to any port 22 proto tcp comment 'operator ssh'"
ROLE_COMMENT = "comment 'appliance DICOM SCP'"
# The appliance's data folder (received studies, jobs, results), which the uninstall keeps on purpose:
# a mount point (a data disk) that the scenario gives the hosts before site.yml, holding lost+found, so
# it is in every snapshot. The image and container stores (/var/lib/docker, /var/lib/containerd) are
# volumes the test hosts have from the start.
APPLIANCE_DATA = "/var/lib/appliance"


def _sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:]
            sections[current] = []
        else:
            sections[current].append(line)
    return sections


def _diff(before: list[str], after: list[str], label: str) -> list[str]:
    return list(difflib.unified_diff(before, after, "before site.yml", label, lineterm="", n=0))[2:]


@pytest.mark.parametrize("section", SECTIONS)
def test_uninstall_keeping_data_leaves_only_the_data(host, section: str) -> None:  # type: ignore[no-untyped-def]
    before = _sections(host.file(f"{RECORD}/before").content_string)[section]
    after = _sections(host.file(f"{RECORD}/after-keep").content_string)[section]
    expected = [f"+{UNREQUESTED}"] if section == "packages" else []
    diff = _diff(before, after, "after the uninstall keeping data")
    assert [line for line in diff if not line.startswith("@@")] == expected, "\n".join(diff)


@pytest.mark.parametrize("section", SECTIONS)
def test_host_is_as_before_after_the_purge(host, section: str) -> None:  # type: ignore[no-untyped-def]
    before = _sections(host.file(f"{RECORD}/before").content_string)[section]
    after = _sections(host.check_output("/usr/local/sbin/uninstall-snapshot"))[section]
    expected = [f"+{UNREQUESTED}"] if section == "packages" else []
    diff = _diff(before, after, "after the partial host's purging uninstall")
    assert [line for line in diff if not line.startswith("@@")] == expected, "\n".join(diff)


def test_what_was_there_before_site_yml_stays(host) -> None:  # type: ignore[no-untyped-def]
    # The snapshots compare packages, enabled units, /etc (daemon.json, containerd's config, ufw's
    # rules, the site workflow) and accounts; here the same, by name, after both uninstalls.
    for package in [*THERE_BEFORE, UNREQUESTED]:
        assert host.package(package).is_installed, f"{package} was removed"
    # The orphan is still marked automatically installed: nothing ran a host-wide autoremove.
    assert "appliance-test-orphan" in host.check_output("apt-mark showauto").split()
    docker = host.service("docker")
    assert docker.is_enabled and docker.is_running
    assert host.file("/etc/appliance/workflows/site-liver.yaml").contains("name: SiteLiver")
    assert not host.file("/etc/appliance/adapter.yaml").exists


def test_no_trace_of_another_releases_apt_source(host) -> None:  # type: ignore[no-untyped-def]
    # 26.04 got 24.04's Python through a pinned apt source: its files, lists and packages are gone.
    codename = host.system_info.codename
    assert host.run("ls /etc/apt/sources.list.d/appliance-python-* /etc/apt/preferences.d/appliance-python-*").rc != 0
    assert apt_lists_of_other_releases(host.check_output("ls /var/lib/apt/lists").split(), codename) == []
    assert other_release_packages(host.check_output("apt list --installed 2>/dev/null"), codename) == []


def test_unrequested_package_is_not_claimed(host) -> None:  # type: ignore[no-untyped-def]
    # The hook fired during site.yml's first package install (the appliance's virtualenv packages).
    assert host.file("/var/tmp/appliance-test-unrequested.done").exists
    assert host.package(UNREQUESTED).is_installed


def test_firewall_follows_the_allowed_networks(host) -> None:  # type: ignore[no-untyped-def]
    # site.yml allowed 10.11.0.0/16 and 10.12.0.0/16; the role was then run with 10.11.0.0/16 alone.
    narrowed = host.file(f"{RECORD}/ufw-narrowed").content_string.splitlines()
    assert [line for line in narrowed if line.endswith(ROLE_COMMENT)] == [
        f"ufw allow from 10.11.0.0/16 to any port 104 proto tcp {ROLE_COMMENT}"], narrowed
    assert OPERATOR_RULE in narrowed
    # Uninstall took the role's rule out and left the operator's.
    now = host.check_output("ufw show added").splitlines()
    assert OPERATOR_RULE in now and not [line for line in now if line.endswith(ROLE_COMMENT)], now
    assert "Status: active" in host.check_output("ufw status")


def test_kept_image_blobs_intact(host) -> None:  # type: ignore[no-untyped-def]
    # Every blob of the image imported before the uninstall, against its sha256 (only failures print).
    assert host.file(f"{RECORD}/blobs.check").content_string.strip() == "exit 0"


def test_kept_appliance_data_intact(host) -> None:  # type: ignore[no-untyped-def]
    recorded = host.file(f"{RECORD}/appliance-data.sha256").content_string
    assert "payloads/kept-by-uninstall/notes.txt" in recorded and "instance-3.dcm" in recorded
    check = _sections(host.file(f"{RECORD}/appliance-data.check").content_string)
    # checksums: every file; owners: type, numeric owner, mode and link target of every entry (the
    # service user is gone, its IDs stay); jobs: the job store's rows (its files change by design).
    for what in ("checksums", "owners", "jobs"):
        assert check[what] == ["exit 0"], f"{what}:\n" + "\n".join(check[what])


def test_summary_names_the_kept_data_with_sizes(host) -> None:  # type: ignore[no-untyped-def]
    removed, kept, there_before, left = host.file(f"{RECORD}/summary-keep").content_string.splitlines()
    assert removed == "Removed: nothing (none of it was installed)"
    assert there_before == "Left as they were before site.yml, with their images: Docker, containerd"
    assert left == "Nothing that site.yml installs is left."
    # The engines' stores are theirs, not site.yml's data.
    assert kept.startswith("Kept: ") and "/var/lib/containerd" not in kept and "/var/lib/docker" not in kept, kept
    size = int(host.file(f"{RECORD}/appliance-data.du").content_string.split()[0])
    assert size > 900_000  # the three instances written before the uninstall
    assert re.search(rf"{APPLIANCE_DATA} [0-9.]+ \w+ \({size} bytes\)", kept), kept


def test_purge_deleted_the_appliance_data_not_the_engines(host) -> None:  # type: ignore[no-untyped-def]
    # The side effect's uninstall ran with purge_data=true. The data folder is a mount point: emptied
    # of what the appliance added, never removed; lost+found, there before, stays. Docker and containerd
    # were on the host before site.yml: purge leaves them and their stores as they are, the image
    # imported included.
    assert host.run(f"mountpoint -q {APPLIANCE_DATA}").rc == 0
    assert host.check_output(f"ls -A {APPLIANCE_DATA}") == "lost+found"
    assert "appliance-test/kept" in host.check_output("docker image ls --format '{{.Repository}}'")
    purge = json.loads(host.file(f"{RECORD}/summary-purge.json").content_string)
    removed, deleted, there_before, left = purge["summary"]
    assert left == "Nothing that site.yml installs is left."
    assert there_before == "Left as they were before site.yml, with their images: Docker, containerd"
    assert "the preflight facts (" in removed and "Docker" not in removed and "containerd" not in removed
    assert deleted.startswith("Deleted (purge_data=true): ")
    assert "/var/lib/containerd" not in deleted and "/var/lib/docker" not in deleted
    # The interrupted run had installed Triton, with the appliance's virtualenv, but not the appliance.
    assert "Triton (/etc/systemd/system/triton.service, /var/lib/triton)" in removed, removed
    assert "the appliance services (/opt/appliance)" in removed, removed
    size = purge["bytes_before"][APPLIANCE_DATA]
    assert re.search(rf"{APPLIANCE_DATA} [0-9.]+ \w+ \({size} bytes\)", deleted), deleted
