"""Self-test of tests/gpu/check_gpu.py without a GPU: a fake PCI tree and the stand-in NVML library.

On a real GPU machine, run tests/gpu/run.sh instead: it uses the machine's PCI bus and NVML.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
STUB = HERE.parent / "unit" / "fixtures" / "nvml_stub.c"


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake /sys/bus/pci/devices (a T4, an A100, an NVSwitch, an Intel VGA) and a loaded module 580.178.04."""
    root = tmp_path_factory.mktemp("gpu-machine")
    for address, vendor, pci_class, device in [("0000:3b:00.0", "0x10de", "0x030200", "0x1eb8"),
                                               ("0000:af:00.0", "0x10de", "0x030200", "0x20b0"),
                                               ("0000:05:00.0", "0x10de", "0x068000", "0x22a3"),
                                               ("0000:00:02.0", "0x8086", "0x030000", "0x3e92")]:
        folder = root / "pci" / address
        folder.mkdir(parents=True)
        for name, text in (("vendor", vendor), ("class", pci_class), ("device", device)):
            (folder / name).write_text(text + "\n")
    (root / "module-version").write_text("580.178.04\n")
    return root


def run(machine: Path, variant: str = "") -> subprocess.CompletedProcess[str]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        pytest.skip("no C compiler (cc/gcc) to build the stand-in NVML library")
    library = machine / f"libnvidia-ml{variant}.so"
    if not library.exists():
        subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(STUB),
                        *([f"-D{variant}"] if variant else [])], check=True)
    env = {"GPU_CHECK_PCI_ROOT": str(machine / "pci"), "GPU_CHECK_NVML_LIBRARY": str(library),
           "GPU_CHECK_MODULE_VERSION_FILE": str(machine / "module-version"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(HERE / "check_gpu.py")], env=env, capture_output=True, text=True)


def test_a_healthy_machine_passes(machine: Path) -> None:
    result = run(machine)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and "PASS the driver status verdict is ok" in result.stdout
    assert '"fabricmanager": [\n    true' in result.stdout  # the NVSwitch asks for fabric manager
    assert "Turing or newer GPUs" in result.stdout


def test_an_old_nvml_fails_a_check_without_a_traceback(machine: Path) -> None:
    result = run(machine, "OLD_DRIVER")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "FAIL NVML reads every value (no 'unknown'): GPU 0 compute capability unknown" in result.stdout


def test_a_driver_that_does_not_start_is_diagnosed(machine: Path) -> None:
    result = run(machine, "NOT_LOADED")
    assert result.returncode == 1 and "FAIL NVML starts and reads the driver" in result.stdout


def test_no_gpu_skips(tmp_path: Path) -> None:
    (tmp_path / "pci").mkdir()
    env = {"GPU_CHECK_PCI_ROOT": str(tmp_path / "pci"), "GPU_CHECK_MODULE_VERSION_FILE": str(tmp_path / "none"),
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, str(HERE / "check_gpu.py")], env=env, capture_output=True, text=True)
    assert result.returncode == 77 and "SKIP no NVIDIA GPU" in result.stdout


def test_the_playbook_parses() -> None:
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
    if not playbook:
        pytest.skip("ansible-playbook is not installed next to this Python")
    result = subprocess.run([playbook, "-i", "localhost,", "--syntax-check", str(HERE / "gpu-checks.yml")],
                            cwd=HERE.parents[1], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
