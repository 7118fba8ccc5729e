#!/usr/bin/python
"""Ansible module: NVIDIA GPUs seen on the PCI bus and, when the driver is loaded, through NVML."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: Report NVIDIA GPUs from the PCI bus and from NVML (nvidia-ml-py)
description:
  - Lists NVIDIA display controllers under /sys/bus/pci/devices.
  - When the nvidia kernel module is loaded and nvidia-ml-py (C(pynvml)) is importable, reads the
    driver version and each GPU's name, UUID, memory and compute capability through NVML.
  - Never fails because a GPU or driver is missing; the result says what is absent and why.
options: {}
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Read GPU facts
  nvidia_gpu_facts:
  register: gpu
"""

RETURN = r"""
pci_devices:
  description: NVIDIA GPUs on the PCI bus (address, device id, class).
  type: list
  returned: always
module_version:
  description: Version of the loaded nvidia kernel module, or null.
  type: str
  returned: always
nvml:
  description: available (bool), reason (str when unavailable), driver_version, devices.
  type: dict
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia import (
    GPU_PCI_CLASSES,
    NVIDIA_PCI_VENDOR,
    architecture,
    diagnose_nvml_error,
)

PCI_ROOT = "/sys/bus/pci/devices"


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def pci_devices(root=PCI_ROOT):
    """NVIDIA display controllers under *root* as dicts (address, device, class)."""
    found = []
    for address in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        base = os.path.join(root, address)
        pci_class = (_read(os.path.join(base, "class")) or "")[:6]
        if _read(os.path.join(base, "vendor")) == NVIDIA_PCI_VENDOR and pci_class in GPU_PCI_CLASSES:
            found.append({"address": address, "device": _read(os.path.join(base, "device")), "class": pci_class})
    return found


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def nvml_facts(module_version):
    """Driver version and devices through NVML, or available=False with the reason."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return {"available": False, "reason": "nvidia-ml-py (pynvml) is not installed on the host", "devices": []}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return {"available": False, "reason": diagnose_nvml_error(str(err), module_version), "devices": []}
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            capability = f"{major}.{minor}"
            devices.append({
                "index": index,
                "name": _text(pynvml.nvmlDeviceGetName(handle)),
                "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                "memory_total_mib": pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024),
                "compute_capability": capability,
                "architecture": architecture(capability),
            })
        return {
            "available": True,
            "driver_version": _text(pynvml.nvmlSystemGetDriverVersion()),
            "devices": devices,
        }
    finally:
        pynvml.nvmlShutdown()


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module_version = _read("/sys/module/nvidia/version")
    pci = pci_devices()
    if pci or module_version:
        nvml = nvml_facts(module_version)
    else:
        nvml = {"available": False, "reason": "no NVIDIA GPU on the PCI bus", "devices": []}
    module.exit_json(changed=False, pci_devices=pci, module_version=module_version, nvml=nvml)


if __name__ == "__main__":
    main()
