"""After site.yml and the uninstall playbook the host is as it was before, and data was purged."""

from __future__ import annotations

import difflib

import pytest


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


@pytest.mark.parametrize("section", ["packages", "units", "etc", "holds", "users", "groups", "ports"])
def test_host_is_as_before(host, section: str) -> None:  # type: ignore[no-untyped-def]
    before = _sections(host.file("/var/tmp/uninstall/before").content_string)[section]
    after = _sections(host.check_output("/usr/local/sbin/uninstall-snapshot"))[section]
    diff = list(difflib.unified_diff(before, after, "before site.yml", "after uninstall", lineterm="", n=0))
    assert not diff, "\n".join(diff)


def test_purge_deleted_the_image_store(host) -> None:  # type: ignore[no-untyped-def]
    # The side effect's uninstall ran with purge_data=true. In the test hosts both stores are
    # mount points (volumes), which purge empties rather than removes.
    for store in ("/var/lib/containerd", "/var/lib/docker"):
        assert host.run(f"test ! -e {store} || test -z \"$(ls -A {store})\"").rc == 0, f"{store} not purged"
