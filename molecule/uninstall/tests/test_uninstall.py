"""After site.yml and the uninstall playbook the host is as it was before, except the data kept on purpose.

Order of the scenario: prepare (snapshot ``before``, site.yml, data written into the image store and
the appliance's data folder, both recorded), converge (the uninstall, keeping data), idempotence
(the uninstall again, changing nothing), side effect (snapshot ``after-keep`` and the comparisons
of the kept data; a site.yml run interrupted after Triton; the uninstall with ``purge_data=true``),
then these tests.
"""

from __future__ import annotations

import difflib
import json
import re

import pytest

SECTIONS = ["packages", "units", "etc", "holds", "users", "groups", "ports", "places"]
RECORD = "/var/tmp/uninstall"
# The data the uninstall keeps on purpose, where it shows in the snapshot (folders under /opt, /srv
# and /var/lib): the appliance's data folder (received studies, jobs, results). The image and
# container stores (/var/lib/docker, /var/lib/containerd) are kept too, but are volumes that the
# test hosts have from the start, so they never differ.
APPLIANCE_DATA = "/var/lib/appliance"
NO_APPLIANCE_WHY = (
    "Ubuntu 26.04 ships Python 3.14: the sandbox choices skip triton and appliance there, "
    "so there is no appliance data to keep"
)


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


def _appliance_installed(host) -> bool:  # type: ignore[no-untyped-def]
    return bool(host.system_info.release != "26.04")


@pytest.fixture()
def appliance_host(host):  # type: ignore[no-untyped-def]
    if not _appliance_installed(host):
        pytest.skip(NO_APPLIANCE_WHY)
    return host


@pytest.mark.parametrize("section", SECTIONS)
def test_uninstall_keeping_data_leaves_only_the_data(host, section: str) -> None:  # type: ignore[no-untyped-def]
    before = _sections(host.file(f"{RECORD}/before").content_string)[section]
    after = _sections(host.file(f"{RECORD}/after-keep").content_string)[section]
    kept = [f"+{APPLIANCE_DATA}"] if section == "places" and _appliance_installed(host) else []
    diff = _diff(before, after, "after the uninstall keeping data")
    assert [line for line in diff if not line.startswith("@@")] == kept, "\n".join(diff)


@pytest.mark.parametrize("section", SECTIONS)
def test_host_is_as_before_after_the_purge(host, section: str) -> None:  # type: ignore[no-untyped-def]
    before = _sections(host.file(f"{RECORD}/before").content_string)[section]
    after = _sections(host.check_output("/usr/local/sbin/uninstall-snapshot"))[section]
    diff = _diff(before, after, "after the partial host's purging uninstall")
    assert not diff, "\n".join(diff)


def test_kept_image_blobs_intact(host) -> None:  # type: ignore[no-untyped-def]
    # Every blob of the image imported before the uninstall, against its sha256 (only failures print).
    assert host.file(f"{RECORD}/blobs.check").content_string.strip() == "exit 0"


def test_kept_appliance_data_intact(appliance_host) -> None:  # type: ignore[no-untyped-def]
    recorded = appliance_host.file(f"{RECORD}/appliance-data.sha256").content_string
    assert "payloads/kept-by-uninstall/notes.txt" in recorded and "instance-3.dcm" in recorded
    check = _sections(appliance_host.file(f"{RECORD}/appliance-data.check").content_string)
    # checksums: every file; owners: type, numeric owner, mode and link target of every entry (the
    # service user is gone, its IDs stay); jobs: the job store's rows (its files change by design).
    for what in ("checksums", "owners", "jobs"):
        assert check[what] == ["exit 0"], f"{what}:\n" + "\n".join(check[what])


def test_summary_names_the_kept_data_with_sizes(host) -> None:  # type: ignore[no-untyped-def]
    removed, kept, left = host.file(f"{RECORD}/summary-keep").content_string.splitlines()
    assert removed == "Removed: nothing (none of it was installed)"
    assert left == "Nothing that site.yml installs is left."
    assert kept.startswith("Kept: ")
    assert re.search(r"/var/lib/containerd [0-9.]+ \w+ \([0-9]+ bytes\)", kept), kept
    if _appliance_installed(host):
        size = int(host.file(f"{RECORD}/appliance-data.du").content_string.split()[0])
        assert size > 900_000  # the three instances written before the uninstall
        assert re.search(rf"{APPLIANCE_DATA} [0-9.]+ \w+ \({size} bytes\)", kept), kept


def test_purge_deleted_the_data(host) -> None:  # type: ignore[no-untyped-def]
    # The side effect's uninstall ran with purge_data=true. In the test hosts both stores are
    # mount points (volumes), which purge empties rather than removes.
    assert not host.file(APPLIANCE_DATA).exists
    for store in ("/var/lib/containerd", "/var/lib/docker"):
        assert host.run(f'test ! -e {store} || test -z "$(ls -A {store})"').rc == 0, f"{store} not purged"
    purge = json.loads(host.file(f"{RECORD}/summary-purge.json").content_string)
    removed, deleted, left = purge["summary"]
    assert left == "Nothing that site.yml installs is left."
    assert "Docker and containerd (" in removed and "the preflight facts (" in removed
    assert deleted.startswith("Deleted (purge_data=true): ")
    assert "/var/lib/containerd " in deleted
    if _appliance_installed(host):
        # The interrupted run had installed Triton, with the appliance's virtualenv, but not the appliance.
        assert "Triton (/etc/systemd/system/triton.service, /var/lib/triton)" in removed, removed
        assert "the appliance services (/opt/appliance)" in removed, removed
        size = purge["bytes_before"][APPLIANCE_DATA]
        assert re.search(rf"{APPLIANCE_DATA} [0-9.]+ \w+ \({size} bytes\)", deleted), deleted
