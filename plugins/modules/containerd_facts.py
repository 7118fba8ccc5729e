#!/usr/bin/python
"""Ansible module: containerd's version, the config version it reads, and its effective root."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: containerd_facts
short_description: Report containerd's version, config schema version and effective root
description:
  - Runs C(containerd --version) and C(containerd config dump) (the merged configuration,
    drop-ins included). Reports installed=false when containerd is not installed.
options: {}
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Read containerd facts
  containerd_facts:
  register: containerd
"""

RETURN = r"""
installed:
  description: Whether the containerd binary was found.
  type: bool
  returned: always
version:
  description: containerd's version, e.g. 2.2.1.
  type: str
  returned: when installed
config_version:
  description: Config schema version to write in drop-ins (3 for containerd 2.x, 2 for 1.x).
  type: int
  returned: when installed
root:
  description: The effective root (image store) after all drop-ins.
  type: str
  returned: when installed
"""

import re

from ansible.module_utils.basic import AnsibleModule


def parse_version(text):
    """'containerd github.com/containerd/containerd/v2 2.2.1 abc' -> '2.2.1'."""
    match = re.search(r"\sv?(\d+\.\d+\.\d+\S*)", text)
    return match.group(1) if match else None


def parse_root(dump):
    """The top-level root of a config dump (before the first table); TOML allows either quote style."""
    for line in dump.splitlines():
        if line.startswith("["):
            break
        match = re.match(r"""^root\s*=\s*(["'])(.*)\1\s*$""", line)
        if match:
            return match.group(2)
    return None


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    binary = module.get_bin_path("containerd")
    if binary is None:
        module.exit_json(changed=False, installed=False)
    rc, out, err = module.run_command([binary, "--version"])
    version = parse_version(out) if rc == 0 else None
    if version is None:
        module.fail_json(msg=f"cannot read containerd's version: {out or err}")
    rc, dump, err = module.run_command([binary, "config", "dump"])
    if rc != 0:
        module.fail_json(msg=f"containerd config dump failed (is /etc/containerd/config.toml valid?): {err}")
    module.exit_json(
        changed=False,
        installed=True,
        version=version,
        config_version=3 if int(version.split(".")[0]) >= 2 else 2,
        root=parse_root(dump),
    )


if __name__ == "__main__":
    main()
