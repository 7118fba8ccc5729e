#!/usr/bin/python
"""Ansible module: does the installed NVIDIA driver need a reboot, and does NVML report it running?"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_driver_status
short_description: Decide whether the host must reboot for the NVIDIA driver, and verify it through NVML
description:
  - Takes the result of M(nvidia_gpu_facts) (PCI GPUs, loaded module version, NVML) and the driver
    version installed, and returns the reboot decision and the verification verdict.
  - Never reboots and never fails by itself; the role acts on the result.
options:
  gpu:
    description: The registered result of nvidia_gpu_facts.
    type: dict
    required: true
  expected_version:
    description: Driver version installed (the userspace library's), or empty.
    type: str
    default: ""
  kernel_modules:
    description: How the kernel modules were installed (prebuilt, dkms, none).
    type: str
    default: none
  in_container:
    description: The host is a container.
    type: bool
    default: false
  skip_reboot:
    description: The operator reboots on their own schedule.
    type: bool
    default: false
  connection_local:
    description: The play runs on the host itself (connection local).
    type: bool
    default: false
  reboot_done:
    description: The role has already rebooted the host in this run.
    type: bool
    default: false
  running_kernel:
    description: The kernel the host runs.
    type: str
    default: ""
  boot_kernel:
    description: The kernel the next boot starts (the newest installed), which an upgrade run may have changed.
    type: str
    default: ""
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Decide about the reboot
  nvidia_driver_status:
    gpu: "{{ gpu }}"
    expected_version: "580.178.04"
    kernel_modules: prebuilt
  register: status
"""

RETURN = r"""
reboot:
  description: needed (bool), reasons (list), action (none, reboot, skip_container, skip_operator, refuse_local).
  type: dict
  returned: always
verify:
  description: status (ok, no_gpu, pending_reboot, failed), ok (bool), message.
  type: dict
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_driver import reboot_decision, verify


def main():
    module = AnsibleModule(
        argument_spec={
            "gpu": {"type": "dict", "required": True},
            "expected_version": {"type": "str", "default": ""},
            "kernel_modules": {"type": "str", "default": "none"},
            "in_container": {"type": "bool", "default": False},
            "skip_reboot": {"type": "bool", "default": False},
            "connection_local": {"type": "bool", "default": False},
            "reboot_done": {"type": "bool", "default": False},
            "running_kernel": {"type": "str", "default": ""},
            "boot_kernel": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    expected = p["expected_version"] or None
    decision = reboot_decision(p["gpu"], expected, p["kernel_modules"], os.path.isdir("/sys/module/nouveau"),
                               p["in_container"], p["skip_reboot"], p["connection_local"],
                               p["running_kernel"], p["boot_kernel"])
    if p["reboot_done"] and decision["action"] == "reboot":
        # Rebooted once already and still not running: a second reboot would not help; say so.
        decision["action"] = "none"
    pending = decision["needed"] and decision["action"] in ("skip_operator", "refuse_local")
    module.exit_json(changed=False, reboot=decision, verify=verify(p["gpu"], expected, pending))


if __name__ == "__main__":
    main()
