"""The helm role's pins: a Helm 3 release and a published SHA-256 for every architecture it maps."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[2] / "roles/helm/defaults/main.yml").read_text())


def _value(name: str, facts: dict[str, object]) -> object:
    variables = {k: trust_as_template(v) if isinstance(v, str) else v for k, v in DEFAULTS.items()}
    templar = Templar(loader=DataLoader(), variables={**variables, "ansible_facts": facts})
    return templar.template(trust_as_template("{{ " + name + " }}"))


def test_pinned_helm_3() -> None:
    assert re.fullmatch(r"v3\.\d+\.\d+", DEFAULTS["helm_version"])


def test_checksum_pinned_for_every_architecture() -> None:
    for machine, arch in (("x86_64", "amd64"), ("aarch64", "arm64")):
        assert _value("helm_arch", {"architecture": machine}) == arch
        assert re.fullmatch(r"[0-9a-f]{64}", DEFAULTS["helm_checksums"][arch])
    # The values published with v3.19.0's release notes.
    assert DEFAULTS["helm_checksums"]["amd64"].startswith("a7f81ce0")


def test_tarball_name_matches_the_release() -> None:
    assert _value("helm_tarball", {"architecture": "x86_64"}) == "helm-v3.19.0-linux-amd64.tar.gz"
