#!/usr/bin/python
"""Ansible module: NVIDIA GPUs seen on the PCI bus and, when the driver is loaded, through NVML."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: Report NVIDIA GPUs and NVSwitches from the PCI bus, and GPUs through NVML
description:
  - Lists NVIDIA display controllers and NVSwitches (HGX/DGX baseboards) under /sys/bus/pci/devices.
  - Reads the driver version and each GPU's name, UUID, memory and compute capability through NVML, by
    calling the driver's own libnvidia-ml.so.1 through ctypes (no Python binding is needed, so it works
    with every driver and every Python on the host). A call that the driver's NVML lacks leaves its
    field C(unknown) and says so in C(nvml.notes).
  - Never fails because a GPU or driver is missing; the result says what is absent and why.
options:
  nvml:
    description:
      - C(auto) asks NVML when a GPU is on the PCI bus or an nvidia module is loaded; C(always) asks it
        anyway (to check the library on a host without a GPU).
    type: str
    choices: [auto, always]
    default: auto
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Read GPU facts
  nvidia_gpu_facts:
  register: gpu
"""

RETURN = r"""
pci_devices:
  description: NVIDIA GPUs on the PCI bus (address, device id, class, generation).
  type: list
  returned: always
nvswitch_devices:
  description: NVIDIA NVSwitches on the PCI bus (address, device id, class).
  type: list
  returned: always
module_version:
  description: Version of the loaded nvidia kernel module, or null.
  type: str
  returned: always
nvml:
  description: available (bool), reason (str when unavailable), driver_version, devices, notes.
  type: dict
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia import GPU_PCI_CLASSES, NVIDIA_PCI_VENDOR, NVSWITCH_PCI_CLASS, generation
from ansible.module_utils.nvml import facts as nvml_facts

PCI_ROOT = "/sys/bus/pci/devices"


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def pci_devices(root=PCI_ROOT, classes=GPU_PCI_CLASSES):
    """NVIDIA devices of the PCI *classes* under *root* as dicts (address, device, class, generation)."""
    found = []
    for address in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        base = os.path.join(root, address)
        pci_class = (_read(os.path.join(base, "class")) or "")[:6]
        if _read(os.path.join(base, "vendor")) == NVIDIA_PCI_VENDOR and pci_class in classes:
            device = _read(os.path.join(base, "device"))
            found.append({"address": address, "device": device, "class": pci_class,
                          "generation": generation(device)})
    return found


def main():
    module = AnsibleModule(
        argument_spec={"nvml": {"type": "str", "choices": ["auto", "always"], "default": "auto"}},
        supports_check_mode=True,
    )
    module_version = _read("/sys/module/nvidia/version")
    pci = pci_devices()
    switches = pci_devices(classes=(NVSWITCH_PCI_CLASS,))
    if pci or module_version or module.params["nvml"] == "always":
        nvml = nvml_facts(module_version)
    else:
        nvml = {"available": False, "reason": "no NVIDIA GPU on the PCI bus", "devices": [], "notes": []}
    module.exit_json(changed=False, pci_devices=pci, nvswitch_devices=switches, module_version=module_version,
                     nvml=nvml)


if __name__ == "__main__":
    main()
