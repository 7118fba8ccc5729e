"""The helm role's pins: a Helm 3 release the bundled kubernetes.core supports, and a published SHA-256
for every architecture it maps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ansible_collections.kubernetes.core
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


def test_helm_major_is_one_the_bundled_kubernetes_core_supports() -> None:
    """kubernetes.core < 6.4 breaks on Helm 4 (plugin list columns, --atomic/--force): keep Helm 3 until
    the ansible bundle ships 6.4 or later; then this test says Helm 4 may come."""
    manifest = Path(ansible_collections.kubernetes.core.__path__[0]) / "MANIFEST.json"
    version = json.loads(manifest.read_text())["collection_info"]["version"]
    major, minor = (int(part) for part in version.split(".")[:2])
    helm_major = int(DEFAULTS["helm_version"].lstrip("v").split(".")[0])
    assert helm_major == 3 or (major, minor) >= (6, 4), (
        f"Helm {helm_major} with kubernetes.core {version}, whose helm modules need Helm 3")


def test_checksum_pinned_for_every_architecture() -> None:
    for machine, arch in (("x86_64", "amd64"), ("aarch64", "arm64")):
        assert _value("helm_arch", {"architecture": machine}) == arch
        assert re.fullmatch(r"[0-9a-f]{64}", DEFAULTS["helm_checksums"][arch])
    # The values published with v3.22.0's release notes.
    assert DEFAULTS["helm_checksums"]["amd64"].startswith("1e4ab49e")
    assert DEFAULTS["helm_checksums"]["arm64"].startswith("f14e804d")


def test_tarball_name_matches_the_release() -> None:
    assert _value("helm_tarball", {"architecture": "x86_64"}) == "helm-v3.22.0-linux-amd64.tar.gz"
