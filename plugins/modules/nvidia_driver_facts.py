#!/usr/bin/python
"""Ansible module: what the nvidia_driver role needs to know about a host, and its install plan."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_driver_facts
short_description: Read kernels, apt sources and installed NVIDIA packages; plan the driver install
description:
  - Reads the kernel the modules are for (the running one, or a target kernel), the installed kernels and
    which of them have an nvidia module, the kernel metapackages, the apt components enabled per pocket,
    the installed NVIDIA driver packages and their hold state.
  - With I(plan), decides open or proprietary modules, how they come (prebuilt, dkms or none), the
    packages (fabric manager included where NVSwitches need it), checks a version pin against what the
    sources offer, and resolves the whole set with C(apt-get --simulate) so that a set apt cannot install
    is refused before anything changes; or returns C(plan.error) saying why no plan fits. Changes nothing.
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
    description: auto, open or proprietary kernel modules.
    type: str
    default: auto
  module_install:
    description: How the modules come: auto, prebuilt, dkms or none.
    type: str
    default: auto
  version:
    description: Exact driver version to pin, or empty.
    type: str
    default: ""
  target_kernel:
    description: Kernel release to install the modules for (an image being built); empty for the running kernel.
    type: str
    default: ""
  in_container:
    description: The host is a container (shares its kernel).
    type: bool
    default: false
  gpus:
    description: NVIDIA GPUs (PCI devices with C(device), and C(compute_capability) where NVML gave one).
    type: list
    elements: dict
    default: []
  nvswitches:
    description: NVSwitches on the PCI bus.
    type: list
    elements: dict
    default: []
  fabricmanager:
    description: auto (when there are NVSwitches), always or never.
    type: str
    default: auto
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
  hold:
    description: The driver packages are held.
    type: bool
    default: true
  hold_kernel:
    description: The kernel metapackages are held with the driver.
    type: bool
    default: true
  upgrade:
    description: A deliberate upgrade run (driver, modules and held kernel metapackages move together).
    type: bool
    default: false
  plan:
    description: Plan the install (false only reads the host).
    type: bool
    default: true
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
  description: release (the kernel the modules are for), running, flavour, image_metas, modules_dir.
  type: dict
  returned: always
kernels:
  description: installed (newest first), with_module (those with an nvidia module), boot (newest), problem.
  type: dict
  returned: always
initramfs:
  description: path, exists, and tool (whether update-initramfs is installed).
  type: dict
  returned: always
sources:
  description: codename, mirror of its main component, missing (suite -> components), stanzas to add.
  type: dict
  returned: always
installed:
  description: Installed driver packages (any branch) with their versions.
  type: dict
  returned: always
kernel_metas:
  description: Installed kernel metapackages.
  type: list
  returned: always
hold:
  description: Packages the role holds (driver packages, and kernel metapackages with hold_kernel).
  type: list
  returned: always
held:
  description: Driver packages and kernel metapackages on hold.
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
  description: >-
    flavour, flavour_reason, kernel_modules (prebuilt, dkms, none), packages, install (what apt is asked
    for), prebuilt_available, modules_meta, fabricmanager, fabricmanager_reason, changes_needing_upgrade,
    remove (the other module flavour's installed packages, which the chosen one replaces), simulated (what
    apt would install, upgrade or remove), error.
  type: dict
  returned: always
"""

import os
import shutil

from ansible.module_utils.apt_sources import missing_components, parse_indextargets, source_stanzas
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.debian_packages import (
    DPKG_QUERY_FORMAT,
    parse_dpkg_query,
    parse_policy,
    parse_simulation,
    parse_stanzas,
)
from ansible.module_utils.kernel_packages import (
    boot_problem,
    image_metapackages,
    installed_kernels,
    kernel_flavour,
    kernel_metapackages,
    modules_meta_candidates,
)
from ansible.module_utils.nvidia_driver import (
    branch_suffix,
    driver_packages,
    fabricmanager_wanted,
    hold_packages,
    module_flavour,
    needs_upgrade_flag,
    offered_versions,
    other_flavour_packages,
    package_name,
    pin_problem,
    prebuilt_modules_package,
    resolve_module_install,
    secure_boot_blocker,
    select_packages,
    userspace_version,
)

C_LOCALE = {"LANG": "C", "LC_ALL": "C"}


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


def has_nvidia_module(kernel, root="/lib/modules"):
    """Whether an nvidia.ko (prebuilt, or built by DKMS) is installed for *kernel*."""
    for _, _, files in os.walk(os.path.join(root, kernel)):
        if any(name.startswith("nvidia.ko") for name in files):
            return True
    return False


def policy(module, names):
    rc, out, _ = module.run_command(["apt-cache", "policy", *names], environ_update=C_LOCALE)
    return parse_policy(out if rc == 0 else "")


def simulate(module, specs, ignore_holds):
    """(planned, error) of ``apt-get --simulate install``: what apt would do, or why it cannot.

    *ignore_holds* for an upgrade run, which releases the holds before it installs.
    """
    holds = ["--ignore-hold"] if ignore_holds else []
    rc, out, err = module.run_command(
        ["apt-get", "--simulate", "--no-install-recommends", *holds, "install", *specs], environ_update=C_LOCALE)
    if rc == 0:
        return parse_simulation(out), ""
    # apt's own reasons: the unmet dependencies (indented) and its E: lines.
    lines = [line.strip() for line in (out + "\n" + err).splitlines() if line.startswith((" ", "E:"))]
    return [], "apt cannot install this package set: " + " ".join(lines[-8:])


def plan_install(module, p, packages, installed, held, kernel, in_container, image_metas, kernel_metas):
    plan = {"flavour": "", "flavour_reason": "", "kernel_modules": "", "packages": [], "install": [], "remove": [],
            "prebuilt_available": False, "modules_meta": None, "fabricmanager": False, "fabricmanager_reason": "",
            "changes_needing_upgrade": [], "simulated": [], "error": ""}
    try:
        suffix = branch_suffix(p["source"], p["branch"], p["server"])
    except ValueError as err:
        plan["error"] = str(err)
        return plan
    flavour, why, error = module_flavour(p["kernel_modules"], p["branch"], p["gpus"], os.uname().machine)
    plan.update(flavour=flavour, flavour_reason=why, error=error)
    if error:
        return plan
    prebuilt = prebuilt_modules_package(p["source"], p["branch"], p["server"], flavour, kernel)
    open_suffix = "-open" if flavour == "open" else ""
    metas = [f"linux-modules-nvidia-{suffix}{open_suffix}-{m}" for m in modules_meta_candidates(image_metas)]
    offers = policy(module, [prebuilt, *metas]) if p["source"] == "ubuntu" else {}
    plan["prebuilt_available"] = bool((offers.get(prebuilt) or {}).get("candidate"))
    plan["modules_meta"] = next((m.rsplit(f"{suffix}{open_suffix}-", 1)[1] for m in metas
                                 if (offers.get(m) or {}).get("candidate")), None)
    method, error = resolve_module_install(p["module_install"], p["source"], in_container,
                                           plan["prebuilt_available"], kernel)
    plan["kernel_modules"] = method
    plan["error"] = error or secure_boot_blocker(p["secure_boot"], method, plan["prebuilt_available"], kernel)
    if plan["error"]:
        return plan
    plan["fabricmanager"], plan["fabricmanager_reason"] = fabricmanager_wanted(p["fabricmanager"], p["nvswitches"])
    plan["packages"] = select_packages(p["source"], p["branch"], p["server"], flavour, method, kernel,
                                       plan["modules_meta"], p["version"], plan["fabricmanager"],
                                       image_metas[0] if image_metas else None)
    main = package_name(plan["packages"][0])
    if p["version"]:
        modules_depends = ""
        if method == "prebuilt":
            rc, out, _ = module.run_command(["apt-cache", "show", prebuilt], environ_update=C_LOCALE)
            candidate = offers[prebuilt]["candidate"]
            modules_depends = next((s.get("Depends", "") for s in parse_stanzas(out if rc == 0 else "")
                                    if s.get("Version") == candidate), "")
        plan["error"] = pin_problem(p["version"], main, offered_versions(policy(module, [main]).get(main)),
                                    prebuilt if method == "prebuilt" else "", modules_depends,
                                    f"nvidia-kernel-common-{suffix}")
        if plan["error"]:
            return plan
    plan["changes_needing_upgrade"] = needs_upgrade_flag(plan["packages"], installed, held, p["version"])
    if plan["changes_needing_upgrade"] and not p["upgrade"]:
        return plan  # the role stops at the held packages, with that fix
    moves_kernel = p["upgrade"] and p["hold_kernel"] and method != "none"
    plan["install"] = plan["packages"] + (kernel_metas if moves_kernel else [])
    if p["source"] == "ubuntu":
        plan["remove"] = other_flavour_packages(installed, p["source"], p["branch"], p["server"], flavour)
    # As the install will ask apt: a plain run only adds what is missing (or pinned), an upgrade run moves all;
    # a trailing "-" asks apt to remove the other flavour's packages in the same transaction.
    wanted = [spec for spec in plan["install"]
              if p["upgrade"] or "=" in spec or not packages.get(spec, {}).get("installed")]
    if wanted or plan["remove"]:
        wanted += [f"{name}-" for name in plan["remove"]]
        plan["simulated"], plan["error"] = simulate(module, wanted, p["upgrade"])
    return plan


def main():
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "str", "choices": ["ubuntu", "cuda"], "default": "ubuntu"},
            "branch": {"type": "str", "required": True},
            "server": {"type": "bool", "default": True},
            "kernel_modules": {"type": "str", "default": "auto"},
            "module_install": {"type": "str", "default": "auto"},
            "version": {"type": "str", "default": ""},
            "target_kernel": {"type": "str", "default": ""},
            "in_container": {"type": "bool", "default": False},
            "gpus": {"type": "list", "elements": "dict", "default": []},
            "nvswitches": {"type": "list", "elements": "dict", "default": []},
            "fabricmanager": {"type": "str", "default": "auto"},
            "components": {"type": "list", "elements": "str", "default": ["restricted", "multiverse"]},
            "secure_boot": {"type": "str", "default": "unknown"},
            "own_sources_file": {"type": "str", "default": "/etc/apt/sources.list.d/nvidia-driver-ubuntu.sources"},
            "hold": {"type": "bool", "default": True},
            "hold_kernel": {"type": "bool", "default": True},
            "upgrade": {"type": "bool", "default": False},
            "plan": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    release = os_release()
    codename = release.get("VERSION_CODENAME", "")
    running = os.uname().release
    kernel = p["target_kernel"] or running
    # Modules for another kernel (an image being built) can be installed in a container: nothing is loaded.
    in_container = p["in_container"] and not p["target_kernel"]

    rc, out, _ = module.run_command(["dpkg-query", "-W", "-f", DPKG_QUERY_FORMAT])
    packages = parse_dpkg_query(out if rc == 0 else "")
    present = {name: data["version"] for name, data in packages.items() if data["installed"]}
    installed = {name: present[name] for name in driver_packages(present)}
    kernel_metas = kernel_metapackages(packages)
    held = sorted(name for name in driver_packages(packages) + kernel_metas if packages[name]["held"])
    image_metas = image_metapackages(packages, kernel)
    kernels = installed_kernels(packages)
    with_module = sorted(k for k in kernels if has_nvidia_module(k))

    rc, out, _ = module.run_command(
        ["apt-get", "indextargets", "--no-release-info", "--format",
         "$(SITE)\t$(RELEASE)\t$(COMPONENT)\t$(SOURCESENTRY)", "Created-By: Packages"])
    missing, mirror = missing_components(parse_indextargets(out if rc == 0 else ""), codename,
                                         p["components"], p["own_sources_file"])

    plan = {"error": ""}
    if p["plan"]:
        plan = plan_install(module, p, packages, installed, held, kernel, in_container, image_metas, kernel_metas)

    initrd = f"/boot/initrd.img-{kernel}"
    module.exit_json(
        changed=False,
        kernel={"release": kernel, "running": running, "target": bool(p["target_kernel"]),
                "flavour": kernel_flavour(kernel), "image_metas": image_metas,
                "modules_dir": os.path.isdir(f"/lib/modules/{kernel}")},
        kernels={"installed": kernels, "with_module": with_module, "boot": kernels[0] if kernels else None,
                 "problem": boot_problem(kernels, set(with_module), running)},
        initramfs={"path": initrd, "exists": os.path.exists(initrd),
                   "tool": shutil.which("update-initramfs") is not None},
        sources={"codename": codename, "mirror": mirror, "missing": missing, "stanzas": source_stanzas(missing)},
        installed=installed,
        kernel_metas=kernel_metas,
        hold=hold_packages(installed, kernel_metas, p["hold_kernel"]) if p["hold"] else [],
        held=held,
        userspace_version=userspace_version(installed),
        nouveau_loaded=os.path.isdir("/sys/module/nouveau"),
        plan=plan,
    )


if __name__ == "__main__":
    main()
