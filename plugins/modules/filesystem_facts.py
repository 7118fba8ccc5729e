#!/usr/bin/python
"""Ansible module: the filesystem under each given path (even a path that does not exist yet)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: filesystem_facts
short_description: Report the filesystem that holds (or would hold) each path
description:
  - For each path, finds the nearest existing ancestor and reports its device, mount point, size,
    used and available bytes (as df does, for an unprivileged user), and whether the path itself
    or any existing part of it is a symbolic link.
options:
  paths:
    description: Paths to inspect.
    type: list
    elements: path
    required: true
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Where would /mnt/data/docker live
  filesystem_facts:
    paths: [/mnt/data/docker, /var/lib/containerd]
  register: fs
"""

RETURN = r"""
filesystems:
  description: One entry per path, keyed by the path.
  type: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.filesystem import describe


def main():
    module = AnsibleModule(argument_spec={"paths": {"type": "list", "elements": "path", "required": True}},
                           supports_check_mode=True)
    relative = [p for p in module.params["paths"] if not p.startswith("/")]
    if relative:
        module.fail_json(msg=f"filesystem_facts: paths must be absolute, got {relative}")
    module.exit_json(changed=False, filesystems={p: describe(p) for p in module.params["paths"]})


if __name__ == "__main__":
    main()
