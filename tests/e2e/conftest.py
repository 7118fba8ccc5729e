"""Fixtures for the end-to-end tests: one Orthanc and one tritonserver per session, stacks per test.

Everything runs for real on loopback; a test skips (with the reason) only when a binary is missing:
dcmtk ``storescu``, ``/usr/sbin/Orthanc``, ``dciodvfy`` or the nvidia-pytriton ``tritonserver``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.phantom import PhantomFiles, PhantomSpec, write_phantom
from appliance.triton_local import LocalTriton, TritonStartError, server_binary

from .e2ekit import Orthanc, Stack, free_port, stack_config, system_tool


def _need_triton() -> None:
    try:
        server_binary()
    except TritonStartError as exc:
        pytest.skip(f"tritonserver missing: {exc}")


@pytest.fixture(scope="session")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """Orthanc on loopback (AE ORTHANC) receiving the SEGs."""
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory, liver_wheel: Path) -> Iterator[LocalTriton]:
    """A tritonserver serving the appliance's models (OrganSeg and LiverSeg)."""
    _need_triton()
    # Two threads: the trained liver CNN takes ~25 s on 2 cores, twice that on one.
    server = LocalTriton(workdir=tmp_path_factory.mktemp("triton"), intra_op_threads=2, liver_wheel=liver_wheel)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def idle_triton(tmp_path: Path, liver_wheel: Path) -> Iterator[LocalTriton]:
    """A tritonserver with ports reserved but *not* started (the "Triton down" fault); start() it later."""
    _need_triton()
    from appliance.triton_local import Ports, free_ports

    server = LocalTriton(workdir=tmp_path / "triton", ports=Ports(*free_ports(3)), intra_op_threads=1,
                         liver_wheel=liver_wheel)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], PhantomFiles]:
    """``phantoms(seed)``: a 128x128x40 phantom study (its own UIDs per seed), written once per seed."""
    if system_tool("storescu") is None:
        pytest.skip("dcmtk storescu not installed (apt-get install dcmtk)")
    made: dict[int, PhantomFiles] = {}

    def get(seed: int) -> PhantomFiles:
        if seed not in made:
            made[seed] = write_phantom(tmp_path_factory.mktemp(f"phantom{seed}"), PhantomSpec(seed=seed))
        return made[seed]

    return get


@pytest.fixture
def stacks(tmp_path: Path, pacs: Orthanc) -> Iterator[Callable[..., Stack]]:
    """``stacks(triton_ports, **worker_keys)``: a started adapter + worker; all killed at teardown."""
    made: list[Stack] = []

    def make(ports: Any, ae_workflows: dict[str, str] | None = None, **worker: Any) -> Stack:
        folder = tmp_path / f"stack{len(made)}"
        cfg = stack_config(folder, free_port(), pacs.dicom_port, ports, ae_workflows, **worker)
        stack = Stack(folder, cfg)
        made.append(stack)
        return stack.start()

    yield make
    for stack in made:
        stack.kill()
