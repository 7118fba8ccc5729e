"""NVIDIA driver and GPU facts logic shared by modules and unit tests (no Ansible imports).

Versions are NVIDIA driver versions such as ``535.183.01``; compute capabilities are
``major.minor`` strings such as ``8.6``.
"""

from __future__ import annotations

import re

NVIDIA_PCI_VENDOR = "0x10de"
# PCI display controllers: 0x0300 VGA, 0x0302 3D controller (data-centre GPUs).
GPU_PCI_CLASSES = ("0x0300", "0x0302")

ARCHITECTURES = (
    (9, 0, "Hopper"), (8, 9, "Ada Lovelace"), (8, 0, "Ampere"), (7, 5, "Turing"),
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
    no_driver = ("not found", "shared library", "driver not loaded")
    if module_version is None and any(text in lowered for text in no_driver):
        return "no NVIDIA driver is loaded on this host: install it with the nvidia_driver role, then reboot"
    if "insufficient permissions" in lowered or "no permission" in lowered:
        return "NVML was refused access to /dev/nvidia*: run as root or fix the device permissions"
    return f"NVML could not start ({message}); check `nvidia-smi` and `dmesg | grep -i nvidia`"
