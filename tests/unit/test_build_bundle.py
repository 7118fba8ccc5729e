"""roles/appliance/files/build_bundle.py: markers for the host's Python, reproducible bundles."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_bundle", REPO / "roles/appliance/files/build_bundle.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_bundle"] = module
    spec.loader.exec_module(module)
    return module


def _wheel(folder: Path, name: str, version: str, requires: list[str]) -> None:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{name}-{version}.dist-info/METADATA", meta)


def test_markers_are_evaluated_for_the_hosts_python(bundle: ModuleType, tmp_path: Path) -> None:
    _wheel(tmp_path, "appliance", "0.1.0", ["aiohttp>=3", 'onnx; extra == "cpu-serving"'])
    _wheel(tmp_path, "aiohttp", "3.13.0", ['async-timeout<6,>=4; python_version < "3.11"', "yarl"])
    _wheel(tmp_path, "yarl", "1.0", [])
    _wheel(tmp_path, "onnx", "1.23", [])
    env310 = bundle.target_environment("3.10", "x86_64")
    env312 = bundle.target_environment("3.12", "x86_64")
    # What pip download --python-version 3.10 leaves out when the controller runs 3.11:
    assert bundle.unmet_requirements(tmp_path, "appliance[cpu-serving]", env310) == ["async-timeout<6,>=4"]
    assert bundle.unmet_requirements(tmp_path, "appliance[cpu-serving]", env312) == []


def test_extras_are_followed(bundle: ModuleType, tmp_path: Path) -> None:
    _wheel(tmp_path, "appliance", "0.1.0", ['onnx; extra == "cpu-serving"'])
    env = bundle.target_environment("3.12", "x86_64")
    assert bundle.unmet_requirements(tmp_path, "appliance", env) == []
    assert bundle.unmet_requirements(tmp_path, "appliance[cpu-serving]", env) == ["onnx"]


def test_a_version_outside_the_specifier_is_unmet(bundle: ModuleType, tmp_path: Path) -> None:
    _wheel(tmp_path, "appliance", "0.1.0", ["numpy<2"])
    _wheel(tmp_path, "numpy", "2.3.0", [])
    assert bundle.unmet_requirements(tmp_path, "appliance", bundle.target_environment("3.12", "x86_64")) == [
        "numpy<2"]


def test_tar_is_reproducible(bundle: ModuleType, tmp_path: Path) -> None:
    digests = []
    for run in range(2):
        src = tmp_path / f"src{run}"
        (src / "wheels").mkdir(parents=True)
        (src / "wheels" / "b.whl").write_bytes(b"b")
        (src / "a.json").write_text("{}")
        out = tmp_path / f"out{run}.tar"
        bundle.reproducible_tar(src, out)
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_the_key_follows_the_sources_and_the_target(bundle: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "appliance").mkdir()
    (tmp_path / "pyproject.toml").write_text('version = "0.1.0"\n')
    (tmp_path / "appliance" / "a.py").write_text("x = 1\n")
    key = bundle.bundle_key(tmp_path, "3.12", "x86_64", ["cpu-serving"])
    assert key == bundle.bundle_key(tmp_path, "3.12", "x86_64", ["cpu-serving"])
    assert key != bundle.bundle_key(tmp_path, "3.10", "x86_64", ["cpu-serving"])
    (tmp_path / "appliance" / "a.py").write_text("x = 2\n")
    assert key != bundle.bundle_key(tmp_path, "3.12", "x86_64", ["cpu-serving"])


def test_the_package_data_is_in_the_sources(bundle: ModuleType) -> None:
    """The wheel gets what pyproject's package-data names: workflows, the dashboard's pages and viewer."""
    names = {str(p.relative_to(REPO)) for p in bundle.source_files(REPO)}
    for expected in ("appliance/workflows/definitions/organseg.yaml", "appliance/dashboard/templates/job.html",
                     "appliance/dashboard/static/viewer.js", "appliance/dashboard/static/vendor/niivue/niivue.umd.js",
                     "appliance/dashboard/static/vendor/niivue/LICENSE"):
        assert expected in names, expected
