"""Verify the helm role: the pinned tarball downloaded, checksum-verified and installed (a stand-in
tarball from a local mirror here), and the real release only where get.helm.sh is reachable."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO_DEFAULTS = Path(__file__).resolve().parents[3] / "roles/helm/defaults/main.yml"


def test_helm_installed_from_the_verified_tarball(host) -> None:  # type: ignore[no-untyped-def]
    binary = host.file("/usr/local/bin/helm")
    assert binary.is_file and binary.mode == 0o755 and binary.user == "root"
    assert host.check_output("helm version --short").startswith("v3.22.0")


def test_refused_and_skipped_installs_left_nothing(host) -> None:  # type: ignore[no-untyped-def]
    assert not host.file("/usr/local/bin/helm-tampered").exists
    assert not host.file("/usr/local/bin/helm-unreachable").exists
    # The scratch folder of the refused download is gone too.
    assert host.check_output("find /tmp -maxdepth 1 -name 'ansible*.helm' | wc -l") == "0"


def test_real_release_checksum(host) -> None:  # type: ignore[no-untyped-def]
    with open(REPO_DEFAULTS) as handle:
        defaults = yaml.safe_load(handle)
    url = f"https://get.helm.sh/helm-{defaults['helm_version']}-linux-amd64.tar.gz"
    if host.run(f"curl -fsI --max-time 10 {url}").rc != 0:
        pytest.skip(f"the real Helm {defaults['helm_version']} tarball was not downloaded: "
                    "get.helm.sh is unreachable here")
    published = host.check_output(f"curl -fsS --max-time 30 {url}.sha256sum").split()[0]
    assert published == defaults["helm_checksums"]["amd64"]
