"""The NVIDIA facts logic: versions, architectures, NVML diagnoses, PCI scan, Secure Boot."""

from __future__ import annotations

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
     ("8.0", "Ampere"), ("8.6", "Ampere"), ("8.9", "Ada Lovelace"), ("9.0", "Hopper"), ("2.1", "unknown")],
)
def test_architecture(nvidia_utils: ModuleType, capability: str, name: str) -> None:
    assert nvidia_utils.architecture(capability) == name


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
    found = gpu_facts.pci_devices(str(tmp_path))
    assert [d["address"] for d in found] == ["0000:3b:00.0", "0000:af:00.0"]
    assert found[1] == {"address": "0000:af:00.0", "device": "0x1eb8", "class": "0x0300"}


def test_pci_scan_without_sysfs(gpu_facts: ModuleType, tmp_path: Path) -> None:
    assert gpu_facts.pci_devices(str(tmp_path / "missing")) == []


def test_nvml_error_is_diagnosed(gpu_facts: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nvidia-ml-py present but no GPU/driver (as here), NVML init fails: reported, not raised."""
    pynvml = pytest.importorskip("pynvml")

    def fail() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)

    monkeypatch.setattr(pynvml, "nvmlInit", fail)
    facts = gpu_facts.nvml_facts("550.54.15")
    assert facts["available"] is False
    assert "kernel module 550.54.15" in facts["reason"]


def test_real_nvml_without_gpu_degrades(gpu_facts: ModuleType) -> None:
    """On this GPU-less machine the real NVML call fails cleanly with a reason."""
    pytest.importorskip("pynvml")
    facts = gpu_facts.nvml_facts(None)
    if facts["available"]:
        pytest.skip("a GPU and driver are present on this machine")
    assert facts["devices"] == [] and facts["reason"]


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
