"""NVIDIA driver and GPU facts logic shared by modules and unit tests (no Ansible imports).

Versions are NVIDIA driver versions such as ``535.183.01``; compute capabilities are
``major.minor`` strings such as ``8.6``.
"""

from __future__ import annotations

import re

NVIDIA_PCI_VENDOR = "0x10de"
# PCI display controllers: 0x0300 VGA, 0x0302 3D controller (data-centre GPUs).
GPU_PCI_CLASSES = ("0x0300", "0x0302")
# NVSwitches (HGX/DGX baseboards) are NVIDIA "other bridge" devices.
NVSWITCH_PCI_CLASS = "0x0680"

# NVIDIA's PCI device IDs grow with each GPU generation: Turing starts at 0x1e00 (TU102) and every older
# GPU (Volta GV100 0x1db*, Pascal, Maxwell, Kepler) is below it; Blackwell starts at 0x2900 (GB100).
# Hopper GH100 (0x23xx) on an Arm host is Grace Hopper.
TURING_FIRST_DEVICE = 0x1E00
BLACKWELL_FIRST_DEVICE = 0x2900
HOPPER_DEVICES = range(0x2300, 0x2400)

ARCHITECTURES = (
    (10, 0, "Blackwell"), (9, 0, "Hopper"), (8, 9, "Ada Lovelace"), (8, 0, "Ampere"), (7, 5, "Turing"),
    (7, 0, "Volta"), (6, 0, "Pascal"), (5, 0, "Maxwell"), (3, 0, "Kepler"),
)


def parse_version(text: str) -> tuple[int, ...]:
    """Numeric tuple of a dotted version (``"535.183.01"`` -> ``(535, 183, 1)``).

    Raises ValueError naming the text when it holds no leading number.
    """
    parts = re.findall(r"\d+", text.strip())
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in parts)


def version_at_least(found: str, minimum: str) -> bool:
    """True when *found* >= *minimum*, comparing numerically part by part (missing parts are 0)."""
    a, b = parse_version(found), parse_version(minimum)
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


def architecture(capability: str) -> str:
    """Marketing name of the GPU architecture for a compute capability (``"unknown"`` if older)."""
    major, minor = (parse_version(capability) + (0,))[:2]
    for arch_major, arch_minor, name in ARCHITECTURES:
        if (major, minor) >= (arch_major, arch_minor):
            return name
    return "unknown"


def generation(device_id: str | None, capability: str | None = None) -> str:
    """Module-relevant GPU generation: ``pre-turing``, ``turing+``, ``blackwell+`` or ``unknown``.

    From the CUDA compute capability when NVML gave one (7.5 Turing, 10.0 Blackwell), else from the PCI
    device ID (``"0x1eb8"``).
    """
    if capability and capability != "unknown":
        major_minor = (parse_version(capability) + (0,))[:2]
        if major_minor >= (10, 0):
            return "blackwell+"
        return "turing+" if major_minor >= (7, 5) else "pre-turing"
    try:
        number = int(device_id or "", 16)
    except ValueError:
        return "unknown"
    if number >= BLACKWELL_FIRST_DEVICE:
        return "blackwell+"
    return "turing+" if number >= TURING_FIRST_DEVICE else "pre-turing"


def diagnose_nvml_error(message: str, module_version: str | None) -> str:
    """Plain-language cause and fix for an NVML initialisation error.

    *module_version* is the loaded kernel module's version (``/sys/module/nvidia/version``),
    None when no module is loaded.
    """
    lowered = message.lower()
    if "version mismatch" in lowered:
        loaded = f" (kernel module {module_version})" if module_version else ""
        return (
            f"the NVIDIA kernel module{loaded} and the user-space library differ, usually after the driver "
            "packages were upgraded under a running system; reboot the host (or unload and reload the "
            "nvidia modules with no GPU process running), and hold the driver packages so it cannot recur"
        )
    no_driver = ("not found", "shared library", "shared object", "driver not loaded")
    if module_version is None and any(text in lowered for text in no_driver):
        return "no NVIDIA driver is loaded on this host: install it with the nvidia_driver role, then reboot"
    if "shared object" in lowered:
        return (f"the nvidia kernel module {module_version} is loaded but its user-space library libnvidia-ml.so.1 "
                "is missing: install the driver packages with the nvidia_driver role")
    if "insufficient permissions" in lowered or "no permission" in lowered:
        return "NVML was refused access to /dev/nvidia*: run as root or fix the device permissions"
    return f"NVML could not start ({message}); check `nvidia-smi` and `dmesg | grep -i nvidia`"
