#!/usr/bin/env python3
"""GPU checks for a real NVIDIA machine, offline and without Ansible: PCI scan, NVML through ctypes,
the driver status and mismatch diagnosis, the open/proprietary choice, fabric manager.

Prints what it found and one line per check (PASS/FAIL/SKIP); exit 0 when all pass, 1 on a failure,
77 when there is no NVIDIA GPU to check. It imports the project's own plugin code (plugins/module_utils),
so what it checks is what the roles run. For a self-test without a GPU, GPU_CHECK_PCI_ROOT points at a
fake /sys/bus/pci/devices and GPU_CHECK_NVML_LIBRARY at a stand-in NVML library.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
UTILS = REPO / "plugins" / "module_utils"


def load(name: str) -> ModuleType:
    """Import plugins/module_utils/<name>.py as ansible.module_utils.<name>, as Ansible ships it to a host."""
    full = f"ansible.module_utils.{name}"
    spec = importlib.util.spec_from_file_location(full, UTILS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    spec.loader.exec_module(module)
    return module


def pci_devices(root: str, classes: tuple[str, ...], nvidia: ModuleType) -> list[dict[str, str]]:
    """Same scan as nvidia_gpu_facts (which needs Ansible to import)."""
    found = []
    for address in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        base = Path(root, address)

        def read(name: str, base: Path = base) -> str:
            try:
                return (base / name).read_text().strip()
            except OSError:
                return ""

        if read("vendor") == nvidia.NVIDIA_PCI_VENDOR and read("class")[:6] in classes:
            found.append({"address": address, "device": read("device"), "class": read("class")[:6],
                          "generation": nvidia.generation(read("device"))})
    return found


def library_version(nvml_path: str | None) -> str | None:
    """Driver version of the installed userspace library, from libnvidia-ml.so.<version>'s file name."""
    if nvml_path:
        return None
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"):
        for path in Path(folder).glob("libnvidia-ml.so.*.*"):
            match = re.search(r"libnvidia-ml\.so\.(\d+\.\d+(?:\.\d+)?)$", path.name)
            if match:
                return match.group(1)
    return None


def main() -> int:
    nvidia = load("nvidia")
    load("debian_packages")
    nvml = load("nvml")
    driver = load("nvidia_driver")
    pci_root = os.environ.get("GPU_CHECK_PCI_ROOT", "/sys/bus/pci/devices")
    nvml_path = os.environ.get("GPU_CHECK_NVML_LIBRARY")
    module_file = Path(os.environ.get("GPU_CHECK_MODULE_VERSION_FILE", "/sys/module/nvidia/version"))
    module_version = module_file.read_text().strip() if module_file.exists() else None

    gpus = pci_devices(pci_root, nvidia.GPU_PCI_CLASSES, nvidia)
    switches = pci_devices(pci_root, (nvidia.NVSWITCH_PCI_CLASS,), nvidia)
    facts = nvml.facts(module_version, loader=(lambda _: ctypes.CDLL(nvml_path)) if nvml_path else ctypes.CDLL)
    installed = library_version(nvml_path) or facts.get("driver_version")
    gpu = {"pci_devices": gpus, "module_version": module_version, "nvml": facts}
    verdict = driver.verify(gpu, installed, False)
    reboot = driver.reboot_decision(gpu, installed, "prebuilt", os.path.isdir("/sys/module/nouveau"), False, False,
                                    False)
    # As the role decides it: from the PCI devices preflight saved.
    flavour = driver.module_flavour("auto", (facts.get("driver_version") or "580")[:3], gpus, os.uname().machine)
    fabric = driver.fabricmanager_wanted("auto", switches)
    print(json.dumps({"pci_gpus": gpus, "nvswitches": switches, "kernel_module": module_version,
                      "library": installed, "nvml": facts, "verify": verdict, "reboot": reboot,
                      "kernel_modules_auto": flavour[:2], "fabricmanager": fabric}, indent=2))

    if not gpus and not module_version:
        print("SKIP no NVIDIA GPU on the PCI bus and no nvidia module loaded: nothing to check")
        return 77
    checks = [
        ("NVML starts and reads the driver", facts["available"], facts.get("reason", "")),
        ("NVML sees every GPU on the PCI bus", len(facts["devices"]) == len(gpus),
         f"{len(facts['devices'])} through NVML, {len(gpus)} on the PCI bus"),
        ("NVML reads every value (no 'unknown')", not facts.get("notes"), "; ".join(facts.get("notes", []))),
        ("the loaded module is the installed library", module_version is not None and installed is not None
         and driver.same_version(module_version, installed), f"module {module_version}, library {installed}"),
        ("the driver status verdict is ok", verdict["status"] == "ok", verdict["message"]),
        ("no reboot is needed", reboot["action"] == "none", "; ".join(reboot["reasons"])),
        ("open/proprietary can be decided", flavour[2] == "", flavour[2]),
    ]
    # The mismatch diagnosis on this machine's own versions: what a stale library would be told.
    if module_version:
        text = nvidia.diagnose_nvml_error("Driver/library version mismatch", module_version)
        checks.append(("the mismatch diagnosis names the module and the fix",
                       f"kernel module {module_version}" in text and "reboot" in text, text))
    for device in facts["devices"]:
        if device["compute_capability"] != "unknown":
            checks.append((f"GPU {device['index']} ({device['name']}) is Pascal (6.0) or newer, as preflight requires",
                           nvidia.version_at_least(device["compute_capability"], "6.0"), device["compute_capability"]))
    if facts.get("available"):
        checks.append(("the driver is R535.54.03 or newer, as preflight requires",
                       nvidia.version_at_least(facts["driver_version"], "535.54.03"), facts["driver_version"]))
    failed = 0
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'} {name}{'' if ok or not detail else ': ' + detail}")
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
