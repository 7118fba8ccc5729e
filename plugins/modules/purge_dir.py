#!/usr/bin/python
"""Ansible module: delete what a role put into a folder, never a mount point or what was there before."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: purge_dir
short_description: Empty a folder of what a role added, keeping earlier entries and mount points
description:
  - Deletes every entry directly under I(path) except the names in I(keep) (what the folder held
    before the role first ran), then, with I(remove), the folder itself unless it is a mount point
    or still holds kept entries.
  - Never crosses into another filesystem; if anything is mounted below I(path), nothing is deleted and
    the module fails naming the mounts. Symbolic links are deleted, never followed.
  - A missing I(path) is not an error. Runs in check mode (reports what it would delete).
options:
  path:
    description: The folder, e.g. Docker's data-root.
    type: path
    required: true
  keep:
    description: Names of entries directly under I(path) to leave alone (they were there before the role).
    type: list
    elements: str
    default: []
  remove:
    description: Also remove I(path) itself once empty (only for a folder the role created), unless it is a mount point.
    type: bool
    default: false
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Delete Docker's images and containers, keeping what the operator had there
  purge_dir:
    path: /var/lib/docker
    keep: "{{ record.data_dirs['/var/lib/docker'] }}"
"""

RETURN = r"""
deleted:
  description: Names of the entries deleted (or that would be, in check mode), sorted.
  type: list
  elements: str
  returned: always
kept:
  description: Names of the entries left because they were listed in I(keep).
  type: list
  elements: str
  returned: always
mount_point:
  description: Whether I(path) is a mount point (then it is emptied, never removed).
  type: bool
  returned: always
removed:
  description: Whether I(path) itself was (or would be) removed.
  type: bool
  returned: always
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule


def _unescape(field):
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    return field.encode().decode("unicode_escape")


def mounts_below(path):
    """Mount points strictly below *path*, from /proc/self/mountinfo."""
    prefix = path.rstrip("/") + "/"
    try:
        with open("/proc/self/mountinfo") as handle:
            points = [_unescape(line.split()[4]) for line in handle if line.strip()]
    except OSError:
        return []
    return sorted({point for point in points if point.startswith(prefix)})


def delete_entry(entry):
    if os.path.isdir(entry) and not os.path.islink(entry):
        shutil.rmtree(entry)
    else:
        os.unlink(entry)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "keep": {"type": "list", "elements": "str", "default": []},
            "remove": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    path = os.path.normpath(module.params["path"])
    if path == "/" or not os.path.isabs(path):
        module.fail_json(msg=f"purge_dir refuses {path!r}: give an absolute folder other than /")
    if not os.path.lexists(path):
        module.exit_json(changed=False, deleted=[], kept=[], mount_point=False, removed=False)
    if os.path.islink(path) or not os.path.isdir(path):
        module.fail_json(msg=f"{path} is not a folder (a file or a symbolic link): nothing was deleted")
    nested = mounts_below(path)
    if nested:
        module.fail_json(msg=f"filesystems are mounted below {path} ({', '.join(nested)}): unmount them first; "
                             "nothing was deleted", mounts=nested)
    keep = set(module.params["keep"])
    names = sorted(os.listdir(path))
    deleted = [name for name in names if name not in keep]
    kept = [name for name in names if name in keep]
    mount_point = os.path.ismount(path)
    removed = module.params["remove"] and not mount_point and not kept
    if not module.check_mode:
        for name in deleted:
            delete_entry(os.path.join(path, name))
        if removed:
            os.rmdir(path)
    module.exit_json(changed=bool(deleted) or removed, deleted=deleted, kept=kept, mount_point=mount_point,
                     removed=removed)


if __name__ == "__main__":
    main()
