#!/usr/bin/python
"""Ansible module: merge keys into a JSON file (or remove them) without touching the other keys, and undo that."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: json_merge
short_description: Merge keys into a JSON file, or remove keys, keeping every other key
description:
  - Reads the JSON object in I(path) (an absent or empty file is C({})), deep-merges I(merge) into it
    (nested objects merge, other values replace) and removes the dotted I(remove) paths.
  - Writes only when the result differs, atomically (temporary file, fsync, rename), with the given mode.
  - Keys set by the operator or another role survive; that is the point of this module.
  - Returns I(undo), the entries that put back what this call changed, key by key. A role that keeps
    them (appending each run's) can hand them to I(restore) later to take its keys back out and
    give every key it overwrote its earlier value, while keys others set since stay.
options:
  path:
    description: The JSON file, e.g. /etc/docker/daemon.json.
    type: path
    required: true
  merge:
    description: Object to deep-merge into the file.
    type: dict
    default: {}
  remove:
    description: Dotted key paths to remove (e.g. C(runtimes.nvidia)); parents left empty go too.
    type: list
    elements: str
    default: []
  restore:
    description:
      - An undo log (the I(undo) entries of earlier calls, oldest first), applied newest first before
        I(merge) and I(remove), so that each key ends with the value it had before the oldest entry.
    type: list
    elements: dict
    default: []
  mode:
    description: File mode when the file is written.
    type: raw
    default: "0644"
  delete_if_empty:
    description: Delete the file when the result is an empty object.
    type: bool
    default: false
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Use the systemd cgroup driver
  json_merge:
    path: /etc/docker/daemon.json
    merge:
      exec-opts: ["native.cgroupdriver=systemd"]
"""

RETURN = r"""
content:
  description: The resulting JSON object.
  type: dict
  returned: always
undo:
  description:
    - What undoes this call, one entry per changed key, C({"path": [keys], "was": value}) or, for a key
      that was not there, C({"path": [keys]}). Empty when nothing changed.
  type: list
  elements: dict
  returned: always
existed:
  description: Whether the file existed before this call.
  type: bool
  returned: always
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.json_merge import apply_undo, deep_merge, remove_paths, undo_entries


def _load(module, path):
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        text = handle.read()
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as err:
        module.fail_json(msg=f"{path} is not valid JSON ({err}); fix or remove it first, nothing was changed")
    if not isinstance(doc, dict):
        module.fail_json(msg=f"{path} holds a JSON {type(doc).__name__}, not an object; nothing was changed")
    return doc


def _write(path, doc, mode):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".json_merge-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "merge": {"type": "dict", "default": {}},
            "remove": {"type": "list", "elements": "str", "default": []},
            "restore": {"type": "list", "elements": "dict", "default": []},
            "mode": {"type": "raw", "default": "0644"},
            "delete_if_empty": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    existed = os.path.exists(path)
    before = _load(module, path)
    restored = apply_undo(before, module.params["restore"])
    after = remove_paths(deep_merge(restored, module.params["merge"]), module.params["remove"])
    delete = module.params["delete_if_empty"] and not after
    changed = (before != after) or (delete and existed)
    diff = {"before": json.dumps(before, indent=2, sort_keys=True) + "\n",
            "after": "" if delete else json.dumps(after, indent=2, sort_keys=True) + "\n",
            "before_header": path, "after_header": path}
    if changed and not module.check_mode:
        if delete:
            os.unlink(path)
        else:
            mode = module.params["mode"]
            _write(path, after, int(mode, 8) if isinstance(mode, str) else mode)
    module.exit_json(changed=changed, content=after, diff=diff, undo=undo_entries(before, after), existed=existed)


if __name__ == "__main__":
    main()
