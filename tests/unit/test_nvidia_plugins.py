"""The NVIDIA facts logic: versions, architectures, NVML diagnoses, PCI scan, Secure Boot."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.mark.parametrize(
    ("found", "minimum", "expected"),
    [
        ("535.183.01", "535.54.03", True),
        ("535.54.03", "535.54.03", True),
        ("535.54", "535.54.03", False),
        ("470.256.02", "535.54.03", False),
        ("550", "535.54.03", True),
        ("8.6", "6.0", True),
        ("3.7", "6.0", False),
        ("10.0", "6.0", True),  # numeric, not lexical: "10" > "6"
    ],
)
def test_version_at_least(nvidia_utils: ModuleType, found: str, minimum: str, expected: bool) -> None:
    assert nvidia_utils.version_at_least(found, minimum) is expected


def test_parse_version_rejects_text(nvidia_utils: ModuleType) -> None:
    with pytest.raises(ValueError, match="not a version: 'none'"):
        nvidia_utils.parse_version("none")


@pytest.mark.parametrize(
    ("capability", "name"),
    [("3.7", "Kepler"), ("6.0", "Pascal"), ("6.1", "Pascal"), ("7.0", "Volta"), ("7.5", "Turing"),
     ("8.0", "Ampere"), ("8.6", "Ampere"), ("8.9", "Ada Lovelace"), ("9.0", "Hopper"), ("10.0", "Blackwell"),
     ("12.0", "Blackwell"), ("2.1", "unknown")],
)
def test_architecture(nvidia_utils: ModuleType, capability: str, name: str) -> None:
    assert nvidia_utils.architecture(capability) == name


@pytest.mark.parametrize(("device", "capability", "generation"), [
    ("0x1db5", None, "pre-turing"),  # V100
    ("0x15f8", None, "pre-turing"),  # P100
    ("0x1e02", None, "turing+"),  # Titan RTX, the first Turing ID
    ("0x1eb8", None, "turing+"),  # T4
    ("0x2330", None, "turing+"),  # H100
    ("0x28a0", None, "turing+"),  # Ada
    ("0x2901", None, "blackwell+"),  # B200
    ("0x2b85", None, "blackwell+"),  # RTX 5090
    ("nonsense", None, "unknown"),
    (None, None, "unknown"),
    ("0x2901", "7.0", "pre-turing"),  # NVML's compute capability decides
    ("0x1db5", "unknown", "pre-turing"),
])
def test_generation(nvidia_utils: ModuleType, device: str | None, capability: str | None, generation: str) -> None:
    assert nvidia_utils.generation(device, capability) == generation


def test_mismatch_diagnosis_names_module_and_fix(nvidia_utils: ModuleType) -> None:
    text = nvidia_utils.diagnose_nvml_error("Driver/library version mismatch", "535.183.01")
    assert "kernel module 535.183.01" in text
    assert "reboot" in text and "hold the driver packages" in text


def test_no_driver_diagnosis(nvidia_utils: ModuleType) -> None:
    text = nvidia_utils.diagnose_nvml_error("NVML Shared Library Not Found", None)
    assert "no NVIDIA driver is loaded" in text and "nvidia_driver role" in text


def test_unknown_nvml_error_keeps_message(nvidia_utils: ModuleType) -> None:
    assert "Unknown Error" in nvidia_utils.diagnose_nvml_error("Unknown Error", "550.1")


def _device(root: Path, address: str, vendor: str, pci_class: str, device: str = "0x20b0") -> None:
    path = root / address
    path.mkdir(parents=True)
    (path / "vendor").write_text(vendor + "\n")
    (path / "class").write_text(pci_class + "\n")
    (path / "device").write_text(device + "\n")


def test_pci_scan_finds_only_nvidia_display_controllers(gpu_facts: ModuleType, tmp_path: Path) -> None:
    _device(tmp_path, "0000:00:02.0", "0x8086", "0x030000")  # Intel VGA
    _device(tmp_path, "0000:3b:00.0", "0x10de", "0x030200")  # NVIDIA 3D controller (A100)
    _device(tmp_path, "0000:3b:00.1", "0x10de", "0x040300")  # NVIDIA HDMI audio
    _device(tmp_path, "0000:af:00.0", "0x10de", "0x030000", "0x1eb8")  # NVIDIA VGA (T4)
    _device(tmp_path, "0000:05:00.0", "0x10de", "0x068000", "0x22a3")  # NVSwitch (HGX H100)
    found = gpu_facts.pci_devices(str(tmp_path))
    assert [d["address"] for d in found] == ["0000:3b:00.0", "0000:af:00.0"]
    assert found[1] == {"address": "0000:af:00.0", "device": "0x1eb8", "class": "0x0300", "generation": "turing+"}
    switches = gpu_facts.pci_devices(str(tmp_path), classes=("0x0680",))
    assert [d["device"] for d in switches] == ["0x22a3"]


def test_pci_scan_without_sysfs(gpu_facts: ModuleType, tmp_path: Path) -> None:
    assert gpu_facts.pci_devices(str(tmp_path / "missing")) == []


# --- NVML through ctypes, against a stand-in library with NVML's C signatures ---------------------------

@pytest.fixture(scope="module")
def nvml_stub(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    """Build fixtures/nvml_stub.c into a shared library (one per variant); skip without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        pytest.skip("no C compiler (cc/gcc) to build the stand-in NVML library")
    folder = tmp_path_factory.mktemp("nvml")
    source = Path(__file__).parent / "fixtures" / "nvml_stub.c"

    def build(variant: str = "") -> str:
        library = folder / f"libnvidia-ml{variant or '-current'}.so"
        if not library.exists():
            defines = [f"-D{variant}"] if variant else []
            subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source), *defines], check=True)
        return str(library)

    return build


def test_nvml_reads_driver_and_gpus(nvml: ModuleType, nvml_stub: Callable[[str], str]) -> None:
    facts = nvml.facts(None, loader=lambda _: ctypes.CDLL(nvml_stub("")))
    assert facts["available"] and facts["driver_version"] == "580.178.04" and facts["notes"] == []
    assert facts["devices"] == [
        {"index": 0, "name": "Tesla T4", "uuid": "GPU-11111111-2222-3333-4444-555555555555",
         "memory_total_mib": 15360, "compute_capability": "7.5", "architecture": "Turing"},
        {"index": 1, "name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-66666666-7777-8888-9999-000000000000",
         "memory_total_mib": 40960, "compute_capability": "8.0", "architecture": "Ampere"}]


def test_an_old_nvml_degrades_to_unknown_with_a_note(nvml: ModuleType, nvml_stub: Callable[[str], str]) -> None:
    """What Ubuntu 22.04's python3-pynvml turned into an AttributeError: a missing call is a note, not a traceback."""
    facts = nvml.facts(None, loader=lambda _: ctypes.CDLL(nvml_stub("OLD_DRIVER")))
    assert facts["available"] and [d["compute_capability"] for d in facts["devices"]] == ["unknown", "unknown"]
    assert facts["devices"][0]["architecture"] == "unknown" and facts["devices"][0]["name"] == "Tesla T4"
    assert facts["notes"][0] == ("GPU 0 compute capability unknown: this NVML has no "
                                 "nvmlDeviceGetCudaComputeCapability (an older driver)")


def test_nvml_without_a_loaded_driver_is_diagnosed(nvml: ModuleType, nvml_stub: Callable[[str], str]) -> None:
    facts = nvml.facts(None, loader=lambda _: ctypes.CDLL(nvml_stub("NOT_LOADED")))
    assert facts == {"available": False, "devices": [], "notes": [],
                     "reason": "no NVIDIA driver is loaded on this host: install it with the nvidia_driver role, "
                               "then reboot"}


def test_nvml_library_missing(nvml: ModuleType) -> None:
    facts = nvml.facts("580.178.04", loader=lambda _: ctypes.CDLL("/nonexistent/libnvidia-ml.so.1"))
    assert not facts["available"] and "libnvidia-ml.so.1 is missing" in facts["reason"]
    assert "no NVIDIA driver is loaded" in nvml.facts(None, loader=lambda _: ctypes.CDLL("/nonexistent/x.so"))["reason"]


def test_real_nvml_on_this_machine_degrades(nvml: ModuleType) -> None:
    """On a machine without a GPU (as here) the real library is missing or fails: reported, not raised."""
    facts = nvml.facts(None)
    if facts["available"]:
        pytest.skip("a GPU and driver are present on this machine")
    assert facts["devices"] == [] and facts["reason"]


class _FailingCall:
    """A ctypes-like function returning an NVML error code."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.restype: object = None

    def __call__(self, *args: object) -> int:
        return self.code


def test_mismatch_at_init_is_diagnosed(nvml: ModuleType) -> None:
    class Library:
        nvmlInit_v2 = _FailingCall(18)

        @staticmethod
        def nvmlErrorString(code: int) -> bytes:
            return b"Driver/library version mismatch"

    facts = nvml.read(Library(), "550.54.15")
    assert facts["available"] is False and "kernel module 550.54.15" in facts["reason"]


@pytest.mark.parametrize(("byte", "state"), [(1, "enabled"), (0, "disabled")])
def test_secure_boot_variable(secure_boot: ModuleType, tmp_path: Path, byte: int, state: str) -> None:
    var = tmp_path / "SecureBoot"
    var.write_bytes(b"\x06\x00\x00\x00" + bytes([byte]))
    assert secure_boot.read_state(str(tmp_path), str(var)) == (state, "")


def test_secure_boot_unknown_without_efi(secure_boot: ModuleType, tmp_path: Path) -> None:
    state, reason = secure_boot.read_state(str(tmp_path / "no-efi"), str(tmp_path / "x"))
    assert state == "unknown" and "legacy BIOS" in reason


def test_secure_boot_unreadable_variable(secure_boot: ModuleType, tmp_path: Path) -> None:
    state, reason = secure_boot.read_state(str(tmp_path), str(tmp_path / "missing"))
    assert state == "unknown" and "cannot read" in reason
