#!/usr/bin/python
"""Ansible module: UEFI Secure Boot state, read from the EFI variable (no mokutil needed)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: secure_boot_facts
short_description: Report whether UEFI Secure Boot is enabled
description:
  - Reads the SecureBoot EFI variable under /sys/firmware/efi/efivars.
  - Returns state C(enabled), C(disabled) or C(unknown) with the reason (legacy BIOS boot,
    efivarfs not mounted, as in containers).
options: {}
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Read Secure Boot state
  secure_boot_facts:
  register: secure_boot
"""

RETURN = r"""
state:
  description: enabled, disabled or unknown.
  type: str
  returned: always
reason:
  description: Why the state is unknown (empty otherwise).
  type: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule

EFI_DIR = "/sys/firmware/efi"
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def read_state(efi_dir=EFI_DIR, variable=SECURE_BOOT_VAR):
    """(state, reason) from the SecureBoot variable: 4 attribute bytes, then 1 data byte."""
    if not os.path.isdir(efi_dir):
        return "unknown", "no EFI firmware interface (legacy BIOS boot, or a container)"
    try:
        with open(variable, "rb") as handle:
            data = handle.read()
    except OSError as err:
        return "unknown", f"cannot read the SecureBoot EFI variable: {err.strerror}"
    if len(data) < 5:
        return "unknown", "the SecureBoot EFI variable is truncated"
    return ("enabled" if data[4] == 1 else "disabled"), ""


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    state, reason = read_state()
    module.exit_json(changed=False, state=state, reason=reason)


if __name__ == "__main__":
    main()
