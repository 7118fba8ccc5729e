#!/usr/bin/python
"""Ansible module: what the nvidia_driver role needs to know about a host, and its install plan."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_driver_facts
short_description: Read kernel, apt sources and installed NVIDIA packages; plan the driver install
description:
  - Reads the running kernel, its initramfs, the apt components enabled for the release, the
    installed NVIDIA driver packages and their hold state, and whether Ubuntu has prebuilt signed
    modules for the running kernel.
  - Returns the packages to install and how the kernel modules come (prebuilt, dkms or none), or
    C(error) saying why no plan fits. Changes nothing.
options:
  source:
    description: ubuntu (Ubuntu's archive) or cuda (NVIDIA's CUDA repository).
    type: str
    choices: [ubuntu, cuda]
    default: ubuntu
  branch:
    description: Driver branch, three digits.
    type: str
    required: true
  server:
    description: Use Ubuntu's -server branch packages.
    type: bool
    default: true
  kernel_modules:
    description: auto, prebuilt, dkms or none.
    type: str
    default: auto
  version:
    description: Exact driver version to pin, or empty.
    type: str
    default: ""
  in_container:
    description: The host is a container (shares its kernel).
    type: bool
    default: false
  components:
    description: Ubuntu components the driver packages need.
    type: list
    elements: str
    default: [restricted, multiverse]
  secure_boot:
    description: Secure Boot state (enabled, disabled, unknown), from the preflight facts.
    type: str
    default: unknown
  own_sources_file:
    description: The role's own .sources file, ignored when deciding which components are missing.
    type: str
    default: /etc/apt/sources.list.d/nvidia-driver-ubuntu.sources
author: appliance maintainers
"""

EXAMPLES = r"""
- name: Plan the driver install
  nvidia_driver_facts:
    branch: "580"
    kernel_modules: auto
  register: plan
"""

RETURN = r"""
kernel:
  description: Running kernel release, its flavour and the installed flavour metapackage suffix.
  type: dict
  returned: always
initramfs:
  description: path, exists, and tool (whether update-initramfs is installed).
  type: dict
  returned: always
sources:
  description: codename, mirror of its main component, components still missing.
  type: dict
  returned: always
installed:
  description: Installed driver packages (any branch) with their versions.
  type: dict
  returned: always
hold:
  description: Installed driver packages the role holds (all but kernel-flavour metapackages).
  type: list
  returned: always
held:
  description: Driver packages on hold.
  type: list
  returned: always
userspace_version:
  description: Driver version of the installed libnvidia-compute (NVML), or null.
  type: str
  returned: always
nouveau_loaded:
  description: Whether the nouveau module is loaded.
  type: bool
  returned: always
plan:
  description: kernel_modules (resolved), packages, prebuilt_available, changes_needing_upgrade, error.
  type: dict
  returned: always
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_driver import (
    branch_suffix,
    driver_packages,
    flavour_metapackage,
    hold_packages,
    kernel_flavour,
    missing_components,
    needs_upgrade_flag,
    parse_indextargets,
    resolve_kernel_modules,
    secure_boot_blocker,
    select_packages,
    userspace_version,
)


def os_release(path="/etc/os-release"):
    values = {}
    try:
        with open(path) as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                values[key] = value.strip('"')
    except OSError:
        pass
    return values


def installed_packages(module):
    """{name: version} of installed packages, and the names on hold."""
    fields = "${Package}\t${Version}\t${db:Status-Abbrev}\t${Status}\n"
    rc, out, _ = module.run_command(["dpkg-query", "-W", "-f", fields])
    installed, held = {}, []
    for line in out.splitlines() if rc == 0 else []:
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        name, version, abbrev, status = parts
        if abbrev[1:2] == "i":  # installed (whatever the selection: "ii", "hi")
            installed[name] = version
        if status.startswith("hold "):  # the selection, even for a package no longer installed
            held.append(name)
    return installed, held


def candidate(module, name):
    """Candidate version apt would install for *name*, or None."""
    rc, out, _ = module.run_command(["apt-cache", "policy", name])
    for line in out.splitlines() if rc == 0 else []:
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            value = value.strip()
            return None if value in ("", "(none)") else value
    return None


def main():
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "str", "choices": ["ubuntu", "cuda"], "default": "ubuntu"},
            "branch": {"type": "str", "required": True},
            "server": {"type": "bool", "default": True},
            "kernel_modules": {"type": "str", "default": "auto"},
            "version": {"type": "str", "default": ""},
            "in_container": {"type": "bool", "default": False},
            "components": {"type": "list", "elements": "str", "default": ["restricted", "multiverse"]},
            "secure_boot": {"type": "str", "default": "unknown"},
            "own_sources_file": {"type": "str", "default": "/etc/apt/sources.list.d/nvidia-driver-ubuntu.sources"},
        },
        supports_check_mode=True,
    )
    p = module.params
    release = os_release()
    codename = release.get("VERSION_CODENAME", "")
    kernel = os.uname().release
    installed_all, held_all = installed_packages(module)
    installed = {name: installed_all[name] for name in driver_packages(installed_all)}
    held = driver_packages(set(held_all))
    flavour = kernel_flavour(kernel)
    meta = flavour_metapackage(flavour, release.get("VERSION_ID", ""), installed_all)

    rc, out, _ = module.run_command(
        ["apt-get", "indextargets", "--no-release-info", "--format",
         "$(SITE)\t$(RELEASE)\t$(COMPONENT)\t$(SOURCESENTRY)", "Created-By: Packages"])
    missing, mirror = missing_components(parse_indextargets(out if rc == 0 else ""), codename,
                                         p["components"], p["own_sources_file"])

    plan = {"kernel_modules": "", "packages": [], "prebuilt_available": False,
            "changes_needing_upgrade": [], "error": ""}
    try:
        suffix = branch_suffix(p["source"], p["branch"], p["server"])
    except ValueError as err:
        plan["error"] = str(err)
    else:
        if p["source"] == "ubuntu" and not p["in_container"] and p["kernel_modules"] in ("auto", "prebuilt"):
            plan["prebuilt_available"] = candidate(module, f"linux-modules-nvidia-{suffix}-{kernel}") is not None
        method, error = resolve_kernel_modules(p["kernel_modules"], p["source"], p["in_container"],
                                               plan["prebuilt_available"], kernel)
        plan["kernel_modules"] = method
        plan["error"] = error or secure_boot_blocker(p["secure_boot"], method, plan["prebuilt_available"], kernel)
        if not plan["error"]:
            plan["packages"] = select_packages(p["source"], p["branch"], p["server"], method, kernel, meta,
                                               p["version"])
            plan["changes_needing_upgrade"] = needs_upgrade_flag(plan["packages"], installed, held, p["version"])

    initrd = f"/boot/initrd.img-{kernel}"
    module.exit_json(
        changed=False,
        kernel={"release": kernel, "flavour": flavour, "metapackage": meta,
                "modules_dir": os.path.isdir(f"/lib/modules/{kernel}")},
        initramfs={"path": initrd, "exists": os.path.exists(initrd),
                   "tool": shutil.which("update-initramfs") is not None},
        sources={"codename": codename, "mirror": mirror, "missing": missing},
        installed=installed,
        hold=hold_packages(installed),
        held=held,
        userspace_version=userspace_version(installed),
        nouveau_loaded=os.path.isdir("/sys/module/nouveau"),
        plan=plan,
    )


if __name__ == "__main__":
    main()
