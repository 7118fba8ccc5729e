"""Shared fixtures: a small phantom (128 x 128 x 40) and one real tritonserver per test session,
with its model-control and shared-memory APIs restricted to requests carrying its key, as the
triton role runs it."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk

from appliance.phantom import PhantomFiles, PhantomSpec, write_phantom
from appliance.triton_access import new_key
from appliance.triton_local import LocalTriton, TritonStartError
from appliance.workflows import TritonSettings, Workflow, shipped_workflows


@pytest.fixture(scope="session")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomFiles:
    return write_phantom(tmp_path_factory.mktemp("phantom"), PhantomSpec())


@pytest.fixture(scope="session")
def ground_truth(phantom: PhantomFiles) -> npt.NDArray[np.uint8]:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(phantom.ground_truth)))


@pytest.fixture(scope="session")
def workflows() -> dict[str, Workflow]:
    return shipped_workflows()


KEY_FILE = "triton-key"


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory, liver_wheel: Path) -> Iterator[LocalTriton]:
    """A tritonserver on free loopback ports serving the appliance's model repository, restricted
    with the key in ``workdir/triton-key`` (:func:`key_file`)."""
    workdir = tmp_path_factory.mktemp("triton")
    key = new_key()
    (workdir / KEY_FILE).write_text(key + "\n")
    server = LocalTriton(workdir=workdir, intra_op_threads=2, liver_wheel=liver_wheel, key=key)
    try:
        server.start()
    except TritonStartError as exc:
        pytest.skip(f"tritonserver (nvidia-pytriton) cannot start here: {exc}")
    yield server
    server.stop()


def key_file(server: LocalTriton) -> str:
    """The file holding the key of the session's server."""
    return str(server.workdir / KEY_FILE)


def with_server(workflow: Workflow, url: str, protocol: str = "http", shared_memory: str = "auto",
                key: str | None = None) -> Workflow:
    """``workflow`` pointed at a test server (``key``: its key file)."""
    triton = TritonSettings(url=url, protocol=protocol, shared_memory=shared_memory,  # type: ignore[arg-type]
                            key_file=key)
    return dataclasses.replace(workflow, inference=dataclasses.replace(workflow.inference, triton=triton))


def dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    return float(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def dciodvfy_errors(path: Path) -> list[str]:
    """The "Error" lines dciodvfy reports for ``path`` (skips the test if dciodvfy is absent)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
