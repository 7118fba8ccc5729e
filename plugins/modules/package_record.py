#!/usr/bin/python
"""Ansible module: record the packages a role's install added and the holds it placed, to undo exactly those."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: package_record
short_description: Record what a role's apt install added, so that uninstall removes only that
description:
  - C(snapshot) returns the names of the installed packages (take it right before the install).
  - C(present) claims the packages that are installed now, were not in the snapshot, and are the requested
    packages or their dependencies (Depends, Pre-Depends, through virtual packages), and merges them into
    the record file (JSON), with the holds the role placed and released. A package that appeared during
    the run without being requested (a kernel from unattended-upgrades) is not claimed, nor is a kernel
    image or its modules (the host may be running it), nor anything the host had before.
  - C(read) returns the record (empty when there is none). Uninstall purges the recorded packages,
    releases the recorded holds, then C(absent) deletes the file, and its folder once no other record is
    left in it.
options:
  path:
    description: The record file.
    type: path
    required: true
  state:
    description: snapshot, present, read or absent.
    type: str
    choices: [snapshot, present, read, absent]
    default: present
  before:
    description: The snapshot's C(installed) (with state present).
    type: list
    elements: str
    default: []
  requested:
    description: Packages (or apt specs such as C(name=1.2-*)) the install asked for.
    type: list
    elements: str
    default: []
  holds_added:
    description: Packages the role put on hold in this run.
    type: list
    elements: str
    default: []
  holds_released:
    description: Recorded holds the role released in this run.
    type: list
    elements: str
    default: []
  exclude:
    description: Regular expressions of package names never claimed.
    type: list
    elements: str
    default: ['^linux-(image|image-unsigned|modules|modules-extra)-\d']
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Snapshot the installed packages
  package_record:
    path: /var/lib/appliance-host/example.json
    state: snapshot
  register: before

- name: Install
  ansible.builtin.apt:
    name: [kubeadm]

- name: Record what the install added
  package_record:
    path: /var/lib/appliance-host/example.json
    before: "{{ before.installed }}"
    requested: [kubeadm]
"""

RETURN = r"""
installed:
  description: Installed package names (state snapshot).
  type: list
  returned: when state is snapshot
added:
  description: Packages claimed in this run.
  type: list
  returned: when state is present
record:
  description: packages and holds recorded (state present and read).
  type: dict
  returned: when state is present or read
"""

import json
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.debian_packages import DPKG_QUERY_FORMAT, dependency_closure, installed, parse_dpkg_query


def read_record(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {"packages": [], "holds": []}
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the package record {path}: {err}") from err
    if isinstance(data, list):  # a plain list of package names, as other roles record them
        data = {"packages": data}
    return {"packages": sorted(data.get("packages", [])), "holds": sorted(data.get("holds", []))}


def write_record(path, record, dry_run=False):
    """Write atomically (not with *dry_run*); True when the content changes."""
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    try:
        with open(path) as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    if dry_run:
        return True
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".record-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


def remove_record(path, dry_run=False):
    """Delete the record, and its folder when that is left empty; True when anything was (would be) removed."""
    folder = os.path.dirname(path)
    removed = os.path.exists(path)
    if removed and not dry_run:
        os.unlink(path)
    others = [name for name in os.listdir(folder) if name != os.path.basename(path)] if os.path.isdir(folder) else [""]
    if not others:
        if not dry_run:
            os.rmdir(folder)
        removed = True
    return removed


def claimed(packages, before, requested, exclude):
    """Packages this run added: new since *before*, and reachable from *requested* through dependencies."""
    names = {spec.split("=", 1)[0] for spec in requested}
    new = set(installed(packages)) - set(before)
    patterns = [re.compile(pattern) for pattern in exclude]
    return sorted(name for name in new & dependency_closure(names, packages)
                  if not any(pattern.search(name) for pattern in patterns))


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["snapshot", "present", "read", "absent"], "default": "present"},
            "before": {"type": "list", "elements": "str", "default": []},
            "requested": {"type": "list", "elements": "str", "default": []},
            "holds_added": {"type": "list", "elements": "str", "default": []},
            "holds_released": {"type": "list", "elements": "str", "default": []},
            "exclude": {"type": "list", "elements": "str",
                        "default": [r"^linux-(image|image-unsigned|modules|modules-extra)-\d"]},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "absent":
        module.exit_json(changed=remove_record(p["path"], dry_run=module.check_mode))
    rc, out, err = module.run_command(["dpkg-query", "-W", "-f", DPKG_QUERY_FORMAT])
    if rc != 0:
        module.fail_json(msg=f"dpkg-query failed: {err.strip()}")
    packages = parse_dpkg_query(out)
    if p["state"] == "snapshot":
        module.exit_json(changed=False, installed=sorted(installed(packages)))
    try:
        record = read_record(p["path"])
    except ValueError as error:
        module.fail_json(msg=str(error))
    if p["state"] == "read":
        module.exit_json(changed=False, record=record)
    added = claimed(packages, p["before"], p["requested"], p["exclude"])
    record = {
        "packages": sorted(set(record["packages"]) | set(added)),
        "holds": sorted((set(record["holds"]) | set(p["holds_added"])) - set(p["holds_released"])),
    }
    changed = write_record(p["path"], record, dry_run=module.check_mode)
    module.exit_json(changed=changed, added=added, record=record)


if __name__ == "__main__":
    main()
