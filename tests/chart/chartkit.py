"""Render the appliance chart offline and look at what it made.

Rendering uses the Helm engine embedded in the ``helm-python-sdk`` wheel (no helm binary, no
cluster: ``lookup`` returns nothing, as in ``helm template``). Values files are the chart's own
``ci/*-values.yaml``: one per kind of site.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from appliance import cli

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "appliance"
VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "appliance"
NAMESPACE = "imaging"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def kubernetes_versions() -> tuple[str, str]:
    """The minor the kubernetes role installs and the one after it, as ``X.Y.0``."""
    defaults = yaml.safe_load((REPO / "roles/kubernetes/defaults/main.yml").read_text())
    major, minor = (int(p) for p in str(defaults["kubernetes_version"]).split("."))
    return f"{major}.{minor}.0", f"{major}.{minor + 1}.0"


def values_of(path: Path | None) -> dict[str, Any]:
    """The values in ``path`` (None: the chart's defaults alone)."""
    return {} if path is None else dict(yaml.safe_load(path.read_text()))


@dataclass(frozen=True)
class Pod:
    """A pod template of a workload: its owner, its labels and its spec."""

    owner: dict[str, Any]
    labels: dict[str, str]
    spec: dict[str, Any]

    @property
    def component(self) -> str:
        return self.labels.get("app.kubernetes.io/component", "")

    def containers(self) -> Iterator[dict[str, Any]]:
        """Init containers first, then the containers."""
        yield from self.spec.get("initContainers", [])
        yield from self.spec["containers"]


@dataclass(frozen=True)
class Rendered:
    """The objects one render produced, NOTES.txt left out."""

    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def pods(self) -> list[Pod]:
        return [Pod(d, d["spec"]["template"]["metadata"].get("labels", {}), d["spec"]["template"]["spec"])
                for d in self.docs if d["kind"] in WORKLOADS]

    def pod(self, component: str) -> Pod:
        found = [p for p in self.pods() if p.component == component]
        assert len(found) == 1, f"component {component}: {len(found)} pod templates"
        return found[0]

    def config_file(self) -> str:
        """The appliance's configuration file, as the ConfigMap holds it."""
        return str(self.get("ConfigMap", f"{RELEASE}-config")["data"]["adapter.yaml"])


def render(values: dict[str, Any], name: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
    """Render the chart with ``values``; raises helm_python's HelmValuesError / HelmRenderError."""
    import helm_python

    manifests = helm_python.Chart.load(CHART).render(values, name=name, namespace=namespace)
    docs = [doc for path, text in sorted(manifests.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]
    return Rendered(docs)


def check_config(config: str, tmp_path: Path, service: str) -> tuple[int, str]:
    """``appliance SERVICE --check --config FILE``: its exit status and what it wrote. In this process:
    the same entry point as the console script, without an interpreter start per case."""
    path = tmp_path / "adapter.yaml"
    path.write_text(config)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            status = cli.main([service, "--check", "--config", str(path)])
        except SystemExit as exc:  # argparse and the settings loader exit with the reason
            status = exc.code if isinstance(exc.code, int) else 1
    return status, out.getvalue()
