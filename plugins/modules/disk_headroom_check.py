#!/usr/bin/python
"""Ansible module: judge the filesystems that hold images against kubelet's GC and eviction limits."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: disk_headroom_check
short_description: Check image filesystems against kubelet image-GC and eviction thresholds
description:
  - Groups the given stores by the filesystem that really holds them, then for each filesystem
    computes usage now and after loading I(incoming_bytes) of images, and compares it with the
    image GC high threshold and the evictionHard available thresholds that apply.
  - Never fails by itself; returns C(ok) and a message per filesystem for the role to act on.
options:
  stores:
    description: List of C({path, kind}) with kind C(imagefs) (containerd root, Docker data-root) or C(nodefs).
    type: list
    elements: dict
    required: true
  gc_high_percent:
    description: imageGCHighThresholdPercent.
    type: int
    default: 85
  gc_low_percent:
    description: imageGCLowThresholdPercent.
    type: int
    default: 80
  eviction_hard:
    description: kubelet evictionHard map (e.g. C(imagefs.available) = C(15%)).
    type: dict
    default: {}
  incoming_bytes:
    description: Bytes of images about to be loaded onto the image filesystem.
    type: int
    default: 0
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Check the image filesystem
  disk_headroom_check:
    stores: [{path: /var/lib/containerd, kind: imagefs}]
    incoming_bytes: 20000000000
  register: headroom
"""

RETURN = r"""
filesystems:
  description: One entry per filesystem with figures, limit, ok and message.
  type: list
  returned: always
ok:
  description: True when every filesystem stays below its limit.
  type: bool
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.filesystem import describe
from ansible.module_utils.headroom import check


def main():
    module = AnsibleModule(
        argument_spec={
            "stores": {"type": "list", "elements": "dict", "required": True},
            "gc_high_percent": {"type": "int", "default": 85},
            "gc_low_percent": {"type": "int", "default": 80},
            "eviction_hard": {"type": "dict", "default": {}},
            "incoming_bytes": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    by_device = {}
    for store in module.params["stores"]:
        if not str(store.get("path", "")).startswith("/"):
            module.fail_json(msg=f"disk_headroom: store path must be absolute, got {store!r}")
        fs = describe(store["path"])
        entry = by_device.setdefault(fs["device"], {"fs": fs, "kinds": [], "paths": []})
        if store["kind"] not in entry["kinds"]:
            entry["kinds"].append(store["kind"])
        entry["paths"].append(store["path"])
    results = []
    for entry in by_device.values():
        try:
            result = check(entry["fs"], sorted(entry["kinds"]), module.params["gc_high_percent"],
                           module.params["gc_low_percent"], module.params["eviction_hard"],
                           module.params["incoming_bytes"])
        except ValueError as err:
            module.fail_json(msg=f"disk_headroom: {err}")
        result["paths"] = entry["paths"]
        results.append(result)
    module.exit_json(changed=False, filesystems=results, ok=all(r["ok"] for r in results))


if __name__ == "__main__":
    main()
