"""The appliance's image, built offline in the harness's Docker engine, running the chart's pods.

The images are built by :mod:`harness.appliance_image` (the wheel bundle the appliance role installs,
the harness's debootstrapped Ubuntu, no registry). The chart is rendered for a CPU site whose
destination and allowed source are this machine; its pods then run as containers with their own
commands, environment, volumes and security contexts (:mod:`tests.chart.podrun`): Triton on CPU,
the adapter, worker and exporter, and the job store's database. A phantom CT study is pushed from
this machine into the adapter with dcmtk's ``storescu``, and the DICOM SEG comes back to a
``storescp`` here: the sandbox demo's round trip, with the chart's configuration.

Also: the images saved into one tar load into containerd with ``ctr images import`` under the
names the chart's pods ask for.

Needs a Docker engine (``python -m harness engine start``) and dcmtk; skips naming what is missing.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import appliance_image, engine
from harness.paths import RUN_DIR
from harness.roundtrip import CALLING_AE, LISTEN_AE, listener, make_study, push, wait_for_seg

from .chartkit import render
from .podrun import PodRunner, docker

pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def built() -> appliance_image.Built:
    if engine.find() is None:
        pytest.skip("no Docker engine reachable (python -m harness engine start)")
    return appliance_image.build()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def site_values(built: appliance_image.Built, peer: str, listen_port: int, database: str) -> dict[str, Any]:
    """A CPU site whose only source and destination is ``peer`` (this machine, as the containers see it)."""
    repository, tag = built.appliance.rsplit(":", 1)
    pg_repository, pg_tag = built.postgresql.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag},
        "config": {
            "dicom": {
                "scp": {"port": 104, "ae-titles": [{"ae-title": "OrganSeg", "destinations": ["WORKSTATION"]}],
                        "reject-unknown-sources": True, "sources": [{"host-ip": peer, "ae-title": CALLING_AE}]},
                "scu": {"ae-title": "ClaraSCU", "destinations": [
                    {"name": "WORKSTATION", "host-ip": peer, "port": listen_port, "ae-title": LISTEN_AE}]},
            },
            "completion": {"quiet-seconds": 1},
            "worker": {"workers": 1},
        },
        "database": {"type": database, "bundled": {"image": {"repository": pg_repository, "tag": pg_tag}}},
        "adapter": {"replicas": 1},
        "worker": {"replicas": 1, "podDisruptionBudget": {"enabled": False}},
        "triton": {"mode": "cpu"},
    }


@pytest.fixture
def runner_factory(tmp_path: Path) -> Iterator[list[PodRunner]]:
    runners: list[PodRunner] = []
    yield runners
    for runner in runners:
        runner.close()
    # Files the pods wrote belong to their users; root removes them.
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_study_pushed_into_the_chart_comes_back_as_a_seg(built: appliance_image.Built, database: str,
                                                          tmp_path: Path, runner_factory: list[PodRunner]) -> None:
    if shutil.which("storescu", path="/usr/bin") is None:
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
    listen_port = _free_port()
    runner = PodRunner(tmp_path / "pods")
    runner_factory.append(runner)
    runner.rendered = render(site_values(built, runner.gateway(), listen_port, database))
    claims: dict[str, Path] = {}
    if database == "postgresql":
        postgresql = runner.start("postgresql", claims)
        runner.wait_ready("postgresql", postgresql, timeout=120)
        runner.run_job("migrations", claims)
    triton = runner.start("triton", claims)
    services = {name: runner.start(name, claims) for name in ("adapter", "worker", "exporter")}
    runner.wait_ready("triton", triton, timeout=300)
    runner.wait_ready("adapter", services["adapter"], timeout=120)

    study_uid, files = make_study(tmp_path / "study", slices=40)
    with listener(tmp_path / "received", port=listen_port) as received:
        push(runner.address(services["adapter"]), 10104, "OrganSeg", files)
        try:
            seg = wait_for_seg(received, study_uid, timeout_s=300)
        except TimeoutError:
            logs = "\n".join(f"--- {name}\n{runner.logs(c)}" for name, c in {**services, "triton": triton}.items())
            raise AssertionError(f"no SEG came back; the pods said:\n{logs}") from None
    assert seg.stat().st_size > 0
    listed = json.loads(docker("exec", services["worker"], "appliance", "jobs", "--config",
                               "/etc/appliance/adapter.yaml", "list", "--json").stdout)
    assert [(job["study_uid"], job["state"]) for job in listed] == [(study_uid, "done")]


def _containerd_socket() -> Path | None:
    """The containerd the harness's private engine runs (its images are what ctr imports into)."""
    for path in (RUN_DIR / "exec" / "containerd" / "containerd.sock", Path("/run/containerd/containerd.sock")):
        if path.is_socket():
            return path
    return None


def test_the_saved_images_import_into_containerd_under_the_charts_names(built: appliance_image.Built,
                                                                         tmp_path: Path) -> None:
    socket_path = _containerd_socket()
    if socket_path is None or shutil.which("ctr") is None:
        pytest.skip("no containerd socket or ctr on this machine")
    archive = appliance_image.save(built, tmp_path / "images.tar")
    namespace = f"chart-test-{secrets.token_hex(4)}"
    ctr = ["ctr", "--address", str(socket_path), "--namespace", namespace]
    try:
        subprocess.run([*ctr, "images", "import", str(archive)], check=True, capture_output=True, timeout=600)
        names = subprocess.run([*ctr, "images", "list", "--quiet"], check=True, capture_output=True, text=True).stdout
        repository, tag = built.appliance.rsplit(":", 1)
        pods = render({"image": {"repository": repository, "tag": tag}}).pods()
        wanted = {c["image"] for p in pods for c in p.containers() if c["image"].startswith("localhost/")}
        assert wanted == {built.appliance, built.postgresql}
        assert wanted <= set(names.split())
    finally:
        for name in (built.appliance, built.postgresql):
            subprocess.run([*ctr, "images", "remove", name], capture_output=True, check=False)
        subprocess.run(["ctr", "--address", str(socket_path), "namespaces", "remove", namespace],
                       capture_output=True, check=False)
