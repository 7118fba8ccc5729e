"""Load the repository's Ansible plugins as plain Python modules for unit tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def load(path: Path, name: str) -> ModuleType:
    """Import the file at *path* under module name *name*."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def nvidia_utils() -> ModuleType:
    # Modules import it as ansible.module_utils.nvidia, as Ansible ships it to the host.
    return load(REPO / "plugins/module_utils/nvidia.py", "ansible.module_utils.nvidia")


@pytest.fixture(scope="session")
def debs() -> ModuleType:
    return load(REPO / "plugins/module_utils/debian_packages.py", "ansible.module_utils.debian_packages")


@pytest.fixture(scope="session")
def apt_sources() -> ModuleType:
    return load(REPO / "plugins/module_utils/apt_sources.py", "ansible.module_utils.apt_sources")


@pytest.fixture(scope="session")
def kernels(nvidia_utils: ModuleType) -> ModuleType:
    return load(REPO / "plugins/module_utils/kernel_packages.py", "ansible.module_utils.kernel_packages")


@pytest.fixture(scope="session")
def nvml(nvidia_utils: ModuleType) -> ModuleType:
    return load(REPO / "plugins/module_utils/nvml.py", "ansible.module_utils.nvml")


@pytest.fixture(scope="session")
def drv(nvidia_utils: ModuleType, debs: ModuleType) -> ModuleType:
    return load(REPO / "plugins/module_utils/nvidia_driver.py", "ansible.module_utils.nvidia_driver")


@pytest.fixture(scope="session")
def gpu_facts(nvidia_utils: ModuleType, nvml: ModuleType) -> ModuleType:
    return load(REPO / "plugins/modules/nvidia_gpu_facts.py", "nvidia_gpu_facts")


@pytest.fixture(scope="session")
def secure_boot() -> ModuleType:
    return load(REPO / "plugins/modules/secure_boot_facts.py", "secure_boot_facts")


@pytest.fixture(scope="session")
def headroom() -> ModuleType:
    return load(REPO / "plugins/module_utils/headroom.py", "ansible.module_utils.headroom")


@pytest.fixture(scope="session")
def json_merge() -> ModuleType:
    return load(REPO / "plugins/module_utils/json_merge.py", "ansible.module_utils.json_merge")


@pytest.fixture(scope="session")
def filesystem() -> ModuleType:
    return load(REPO / "plugins/module_utils/filesystem.py", "ansible.module_utils.filesystem")


@pytest.fixture(scope="session")
def containerd_facts() -> ModuleType:
    return load(REPO / "plugins/modules/containerd_facts.py", "containerd_facts")


@pytest.fixture(scope="session")
def apt_plan() -> ModuleType:
    return load(REPO / "plugins/module_utils/apt_plan.py", "ansible.module_utils.apt_plan")

