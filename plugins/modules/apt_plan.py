#!/usr/bin/python
"""Ansible module: which packages an apt install would add, upgrade and remove (a dry run)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: apt_plan
short_description: Ask apt which packages installing some packages would add, upgrade or remove
description:
  - Runs C(apt-get install --simulate) for I(name) and reports the packages apt would newly install,
    upgrade and remove for exactly that request. Changes nothing; runs in check mode too.
  - Roles record I(new) before they install, so that their absent state removes exactly the packages
    their install added. Packages that appear on the host during the run for another reason (a
    kernel from unattended-upgrades, an operator's apt-get) are not in the plan and are never
    claimed.
  - Read the package lists first (apt with update_cache), or the plan is for the old lists.
options:
  name:
    description: The packages the install will ask for.
    type: list
    elements: str
    required: true
  install_recommends:
    description: Whether the install will also pull in recommended packages (as the apt module's option).
    type: bool
    default: false
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Ask apt what installing the engine would add
  apt_plan:
    name: [docker.io, containerd]
  register: __docker_plan
"""

RETURN = r"""
new:
  description: Packages the install would add (not installed now), sorted.
  type: list
  elements: str
  returned: always
upgraded:
  description: Installed packages the install would upgrade.
  type: list
  elements: str
  returned: always
removed:
  description: Installed packages the install would remove (conflicts).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.apt_plan import parse_simulation
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "list", "elements": "str", "required": True},
            "install_recommends": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    apt_get = module.get_bin_path("apt-get", required=True)
    recommends = "--install-recommends" if module.params["install_recommends"] else "--no-install-recommends"
    cmd = [apt_get, "install", "--simulate", "--quiet", recommends, *module.params["name"]]
    rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C", "LANG": "C"})
    if rc != 0:
        module.fail_json(msg=f"apt-get install --simulate {' '.join(module.params['name'])} failed: {err or out}",
                         rc=rc, stdout=out, stderr=err)
    module.exit_json(changed=False, **parse_simulation(out))


if __name__ == "__main__":
    main()
