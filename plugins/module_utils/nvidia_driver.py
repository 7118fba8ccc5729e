"""NVIDIA driver install logic shared by the nvidia_driver modules and unit tests (no Ansible imports).

Open or proprietary kernel modules, how they come (prebuilt, DKMS, none), the package set, pins checked
against what the archive offers, the holds (driver and kernel together), the reboot decision and the
verification verdict. Version comparison and NVML diagnosis come from ``nvidia.py``; kernel packages
from ``kernel_packages.py``; package metadata from ``debian_packages.py``.
"""

from __future__ import annotations

import re

from ansible.module_utils.debian_packages import version_bound
from ansible.module_utils.nvidia import HOPPER_DEVICES, generation, parse_version

# Driver packages of one branch, from Ubuntu's archive or NVIDIA's CUDA repository: every name
# carries the branch number (nvidia-utils-580-server, libnvidia-compute-580, nvidia-dkms-580-server-open,
# nvidia-open-580, cuda-drivers-580, nvidia-fabricmanager-580, linux-modules-nvidia-580-server-6.8.0-45-generic,
# nvidia-firmware-580-server-580.1.2). The container toolkit (nvidia-container-toolkit, libnvidia-container1)
# carries none and is not matched.
DRIVER_PACKAGE_RE = re.compile(
    r"^(?:"
    r"(?:lib)?nvidia-[a-z0-9-]*?-\d{3}(?:-server)?(?:-open)?"
    r"|nvidia-firmware-\d{3}(?:-server)?-[\d.]+"
    r"|xserver-xorg-video-nvidia-\d{3}(?:-server)?"
    r"|cuda-drivers(?:-\d{3})?"
    r"|cuda-drivers-fabricmanager(?:-\d{3})?"
    r"|linux-(?:modules|objects|signatures)-nvidia-\d{3}(?:-server)?(?:-open)?-.+"
    r")$"
)
# linux-modules-nvidia-580-server-open-generic-hwe-22.04 follows the kernel flavour: no kernel release in it.
MODULES_RE = re.compile(r"^linux-modules-nvidia-\d{3}")
KERNEL_RELEASE_RE = re.compile(r"-\d+\.\d+\.\d+-\d+-")
USERSPACE_RE = re.compile(r"^libnvidia-compute-(\d{3})(?:-server)?$")
MODULE_INSTALL_CHOICES = ("auto", "prebuilt", "dkms", "none")
FLAVOUR_CHOICES = ("auto", "open", "proprietary")
FABRICMANAGER_CHOICES = ("auto", "always", "never")
# NVIDIA made the open kernel modules the default for supported GPUs in R560; they exist since R515.
OPEN_DEFAULT_BRANCH = 560
OPEN_FIRST_BRANCH = 515


def upstream_version(deb_version: str) -> str:
    """Driver version of a Debian package version: ``580.178.04-0ubuntu0.24.04.1`` -> ``580.178.04``."""
    without_epoch = deb_version.split(":", 1)[-1]
    return without_epoch.rsplit("-", 1)[0] if "-" in without_epoch else without_epoch


def same_version(found: str, wanted: str) -> bool:
    """True when two driver versions are numerically equal (``580.178.04`` == ``580.178.4``)."""
    return parse_version(found) == parse_version(wanted)


def branch_suffix(source: str, branch: str, server: bool) -> str:
    """Suffix of the branch's package names: ``580-server`` (Ubuntu server branch) or ``580``."""
    if not re.fullmatch(r"\d{3}", branch):
        raise ValueError(f"the driver branch must be three digits such as 580, not {branch!r}")
    return f"{branch}-server" if source == "ubuntu" and server else branch


def module_flavour(requested: str, branch: str, gpus: list[dict], machine: str) -> tuple[str, str, str]:
    """(flavour, why, error): ``open`` or ``proprietary`` kernel modules for these GPUs.

    *gpus* are PCI devices (``device``) with, when NVML gave it, ``compute_capability``. Open modules
    support Turing and newer only; Blackwell and Grace Hopper (Hopper on an Arm host) need them.
    ``auto`` takes open where the GPUs need it or where NVIDIA made it the default (R560 and later,
    Turing and newer), proprietary for GPUs older than Turing or older branches.
    """
    if requested not in FLAVOUR_CHOICES:
        return "", "", f"nvidia_driver_kernel_modules must be one of {', '.join(FLAVOUR_CHOICES)}, not {requested!r}"
    generations = {gpu.get("device") or "?": generation(gpu.get("device"), gpu.get("compute_capability"))
                   for gpu in gpus}
    older = sorted(device for device, gen in generations.items() if gen == "pre-turing")
    grace = machine == "aarch64" and any(int(d, 16) in HOPPER_DEVICES for d in generations if d.startswith("0x"))
    need_open = sorted(device for device, gen in generations.items() if gen == "blackwell+") + (
        ["Grace Hopper"] if grace else [])
    if older and need_open:
        return "", "", (f"this host mixes GPUs older than Turing ({', '.join(older)}), which only the proprietary "
                        f"modules drive, with GPUs that need the open modules ({', '.join(need_open)}): no one "
                        "driver runs both. Fix: split the GPUs across hosts")
    if requested == "open" or (requested == "auto" and need_open):
        if older:
            return "", "", (f"the open kernel modules do not support GPUs older than Turing ({', '.join(older)}). "
                            "Fix: set nvidia_driver_kernel_modules: proprietary (or auto)")
        if int(branch) < OPEN_FIRST_BRANCH:
            return "", "", (f"branch {branch} has no open kernel modules (they start with R{OPEN_FIRST_BRANCH}). "
                            "Fix: use a newer nvidia_driver_branch, or nvidia_driver_kernel_modules: proprietary")
        why = ("requested" if requested == "open" else
               f"the GPUs need them ({', '.join(need_open)}: Blackwell and Grace Hopper run only the open modules)")
        return "open", why, ""
    if requested == "proprietary":
        if need_open:
            return "", "", (f"the proprietary kernel modules do not drive {', '.join(need_open)} (Blackwell and "
                            "Grace Hopper need the open modules). Fix: set nvidia_driver_kernel_modules: open "
                            "(or auto)")
        return "proprietary", "requested", ""
    if older:
        return "proprietary", f"GPUs older than Turing ({', '.join(older)}) run only the proprietary modules", ""
    if int(branch) < OPEN_DEFAULT_BRANCH:
        return "proprietary", f"branch {branch} predates R{OPEN_DEFAULT_BRANCH}, where NVIDIA made open the default", ""
    if not gpus:
        return "open", f"no GPU on the PCI bus; open is NVIDIA's default since R{OPEN_DEFAULT_BRANCH}", ""
    return "open", f"Turing or newer GPUs; open is NVIDIA's default for them since R{OPEN_DEFAULT_BRANCH}", ""


def resolve_module_install(requested: str, source: str, in_container: bool, prebuilt_available: bool,
                           kernel: str) -> tuple[str, str]:
    """(method, error): how the kernel modules are installed, or an error saying why none can be chosen.

    method is ``prebuilt`` (Ubuntu's signed linux-modules-nvidia package for the kernel), ``dkms``
    (built on the host, unsigned) or ``none`` (userspace only). *in_container* is False when the modules
    are for another kernel than the running one (an image being built).
    """
    if requested not in MODULE_INSTALL_CHOICES:
        return "", (f"nvidia_driver_module_install must be one of {', '.join(MODULE_INSTALL_CHOICES)}, "
                    f"not {requested!r}")
    if requested == "none":
        return "none", ""
    if in_container:
        return "", (
            "this host is a container: it shares the kernel of the machine it runs on, so no kernel module "
            "can be installed or loaded here. Fix: install the driver on that machine, and set "
            "nvidia_driver_module_install: none here for the userspace packages only (or nvidia_driver_target_kernel "
            "to build an image for another kernel)"
        )
    if source == "cuda":
        if requested == "prebuilt":
            return "", ("NVIDIA's CUDA repository has no Ubuntu-signed prebuilt modules. Fix: use "
                        "nvidia_driver_source: ubuntu for prebuilt modules, or nvidia_driver_module_install: dkms")
        return "dkms", ""
    if requested == "dkms":
        return "dkms", ""
    if prebuilt_available:
        return "prebuilt", ""
    if requested == "prebuilt":
        return "", (f"Ubuntu has no prebuilt signed NVIDIA modules for the kernel {kernel}. Fix: boot a "
                    "current Ubuntu kernel (apt full-upgrade, reboot), or set nvidia_driver_module_install: dkms")
    return "dkms", ""


def fabricmanager_wanted(setting: str, nvswitches: list[dict]) -> tuple[bool, str]:
    """Whether to install and run nvidia-fabricmanager, and why (NVSwitch systems need it for their GPUs)."""
    if setting == "always":
        return True, "requested (nvidia_driver_fabricmanager: always)"
    if setting == "never":
        return False, "not wanted (nvidia_driver_fabricmanager: never)"
    if nvswitches:
        return True, f"{len(nvswitches)} NVSwitch(es) on the PCI bus: without fabric manager their GPUs stay unusable"
    return False, "no NVSwitch on the PCI bus"


def prebuilt_modules_package(source: str, branch: str, server: bool, flavour: str, kernel: str) -> str:
    """``linux-modules-nvidia-580-server-open-6.8.0-45-generic``: the signed modules for one kernel."""
    open_suffix = "-open" if flavour == "open" else ""
    return f"linux-modules-nvidia-{branch_suffix(source, branch, server)}{open_suffix}-{kernel}"


def select_packages(source: str, branch: str, server: bool, flavour: str, method: str, kernel: str,
                    modules_meta: str | None = None, version: str = "", fabricmanager: bool = False,
                    headers_meta: str | None = None) -> list[str]:
    """Apt package specs to install: driver packages (pinned to *version* when given), modules, headers.

    *flavour* is ``open`` or ``proprietary``; *modules_meta* the flavour suffix of the modules
    metapackage that follows kernel updates (``generic-hwe-22.04``), when the archive has one;
    *headers_meta* that of the kernel's image metapackage (``virtual-hwe-22.04``), whose headers
    metapackage DKMS needs to build for the kernels to come.
    """
    suffix = branch_suffix(source, branch, server)
    open_suffix = "-open" if flavour == "open" else ""
    if source == "cuda" and method == "dkms":
        driver = [f"nvidia-open-{branch}" if flavour == "open" else f"cuda-drivers-{branch}"]
    elif method == "dkms":
        driver = [f"nvidia-headless-{suffix}{open_suffix}", f"nvidia-utils-{suffix}"]
    else:
        driver = [f"nvidia-headless-no-dkms-{suffix}{open_suffix}", f"nvidia-utils-{suffix}"]
    if fabricmanager:
        # Fabric manager has no -server name; its version must be the driver's (it depends on it exactly).
        driver += [f"nvidia-fabricmanager-{branch}", f"libnvidia-nscq-{branch}"]
    if version:
        driver = [f"{name}={version}-*" for name in driver]
    kernel_packages: list[str] = []
    if method == "prebuilt":
        kernel_packages = [prebuilt_modules_package(source, branch, server, flavour, kernel)]
        if modules_meta:
            kernel_packages.append(f"linux-modules-nvidia-{suffix}{open_suffix}-{modules_meta}")
    elif method == "dkms":
        kernel_packages = [f"linux-headers-{kernel}"] + ([f"linux-headers-{headers_meta}"] if headers_meta else [])
    return driver + kernel_packages


def other_flavour_packages(installed: dict[str, str] | set[str], source: str, branch: str, server: bool,
                           flavour: str) -> list[str]:
    """Installed packages of this branch's other module flavour, which the chosen one replaces.

    The userspace libraries, nvidia-utils and nvidia-kernel-common serve both flavours; the headless,
    DKMS and kernel-source packages and the prebuilt modules exist once per flavour and conflict. apt 3's
    solver (Ubuntu 26.04) does not remove a conflicting installed package by itself: it is named.
    """
    suffix = branch_suffix(source, branch, server)
    flavoured = re.compile(rf"^(?:nvidia-(?:headless-no-dkms|headless|dkms|kernel-source|driver)-{suffix}(-open)?"
                           rf"|linux-modules-nvidia-{suffix}(-open)?-.+)$")
    other = []
    for name in installed:
        match = flavoured.match(name)
        is_open = bool(match and (match.group(1) or match.group(2)))
        if match and is_open != (flavour == "open"):
            other.append(name)
    return sorted(other)


def package_name(spec: str) -> str:
    """Name of an apt spec (``nvidia-utils-580-server=580.1-*`` -> ``nvidia-utils-580-server``)."""
    return spec.split("=", 1)[0]


def driver_packages(installed: dict[str, str] | dict[str, dict] | set[str]) -> list[str]:
    """Installed driver packages (of any branch), sorted: what is held, and what state absent may purge."""
    return sorted(name for name in installed if DRIVER_PACKAGE_RE.match(name))


def hold_packages(installed: dict[str, str] | set[str], kernel_metas: list[str], hold_kernel: bool) -> list[str]:
    """Packages to hold: the driver's, with the kernel metapackages when *hold_kernel*.

    Holding the kernel with the driver is what keeps a host from booting a kernel without modules:
    Ubuntu builds each kernel's prebuilt modules against the newest driver point release, so a new
    kernel's modules need a newer driver than the held one, and apt would install the kernel while
    keeping its modules back. Without *hold_kernel* (the role's old behaviour) the modules metapackages
    stay free to follow kernel updates, which the boot check then has to catch.
    """
    driver = driver_packages(installed)
    if hold_kernel:
        return sorted(set(driver) | set(kernel_metas))
    return [name for name in driver if not (MODULES_RE.match(name) and not KERNEL_RELEASE_RE.search(name))]


def secure_boot_blocker(secure_boot: str, method: str, prebuilt_available: bool, kernel: str) -> str:
    """Why the install must stop under Secure Boot with this module method, with the fix ('' = go on)."""
    if secure_boot != "enabled" or method != "dkms":
        return ""
    prebuilt = (f"Ubuntu has prebuilt signed modules for the kernel {kernel}: set nvidia_driver_source: ubuntu "
                "and nvidia_driver_module_install: prebuilt" if prebuilt_available else
                f"Ubuntu has no prebuilt signed modules for the kernel {kernel}: boot a current Ubuntu "
                "kernel (apt full-upgrade, reboot), then use nvidia_driver_module_install: prebuilt")
    return (
        "Secure Boot is enabled and this install builds unsigned DKMS modules, which the kernel refuses to load. "
        f"Fix, either: (1) {prebuilt}; or (2) enroll a Machine Owner Key that DKMS signs with: "
        "sudo update-secureboot-policy --new-key && sudo mokutil --import /var/lib/shim-signed/mok/MOK.der, "
        "reboot, confirm the key in the blue MOK manager at the console, then re-run; "
        "or (3) disable Secure Boot in the firmware"
    )


def offered_versions(policy_entry: dict | None) -> list[tuple[str, list[str]]]:
    """(driver version, suites) the configured sources offer for one package (an ``apt-cache policy`` entry)."""
    return [(upstream_version(v["version"]), v["suites"]) for v in (policy_entry or {}).get("versions", [])
            if v["suites"]]


def pin_problem(version: str, package: str, offered: list[tuple[str, list[str]]],
                modules_package: str = "", modules_depends: str = "", common_package: str = "") -> str:
    """Why *version* cannot be installed ('' when it can).

    *offered* are the versions the sources have for *package* (the main driver package). The archive
    keeps only the newest version per pocket, so an older pin usually is not there at all. A prebuilt
    modules package (*modules_package*, its ``Depends`` in *modules_depends*) is built against a driver
    version and needs at least that *common_package* (nvidia-kernel-common-<branch>).
    """
    if not version:
        return ""
    listing = "; ".join(f"{v} ({', '.join(suites)})" for v, suites in offered) or "none"
    if not any(same_version(v, version) for v, _ in offered):
        return (f"nvidia_driver_version {version} is not offered by this host's apt sources for {package} (offered: "
                f"{listing}). The Ubuntu archive keeps only the newest version per pocket. Fix: pin one of those, or "
                "leave nvidia_driver_version empty for the newest of the branch")
    needed = version_bound(modules_depends, common_package, ">=") if modules_package else None
    if needed and parse_version(upstream_version(needed)) > parse_version(version):
        return (f"the prebuilt modules for this kernel ({modules_package}) are built against driver "
                f"{upstream_version(needed)} and need it or newer, but nvidia_driver_version is {version}. Fix: pin "
                f"{upstream_version(needed)} or newer, or use nvidia_driver_module_install: dkms")
    return ""


def userspace_version(installed: dict[str, str]) -> str | None:
    """Driver version of the installed NVML/CUDA userspace library (the newest libnvidia-compute-*).

    The package actually providing libnvidia-ml.so.1, which differs from the requested branch where
    Ubuntu made an end-of-life branch a transitional package (535-server installs 580-server).
    """
    versions = [upstream_version(v) for name, v in installed.items() if USERSPACE_RE.match(name)]
    return max(versions, key=parse_version) if versions else None


def userspace_branch(installed: dict[str, str]) -> str | None:
    """Branch of the installed userspace library (see userspace_version)."""
    version = userspace_version(installed)
    return version.split(".", 1)[0] if version else None


def needs_upgrade_flag(requested: list[str], installed: dict[str, str], held: list[str], version: str) -> list[str]:
    """Changes that a plain run must not make to held driver packages (empty: none).

    With the packages held, installing another branch, flavour or version is a deliberate upgrade
    (nvidia_driver_upgrade: true), never a side effect of a re-run.
    """
    if not held:
        return []
    changes = []
    for spec in requested:
        name = package_name(spec)
        if not DRIVER_PACKAGE_RE.match(name) or name.startswith("linux-"):
            continue
        if name not in installed:
            changes.append(f"{name} is not installed")
        elif version and not same_version(upstream_version(installed[name]), version):
            changes.append(f"{name} is {upstream_version(installed[name])}, not {version}")
    return changes


def reboot_decision(gpu: dict, expected_version: str | None, method: str, nouveau_loaded: bool,
                    in_container: bool, skip_reboot: bool, connection_local: bool,
                    running_kernel: str = "", boot_kernel: str = "") -> dict:
    """Whether the host must reboot for the installed driver to run, and what the role does about it.

    *gpu* is the nvidia_gpu_facts result; *boot_kernel* the kernel the next boot starts (the newest
    installed), which an upgrade run may have changed. Returns ``needed`` (bool), ``reasons`` (list)
    and ``action``: ``none``, ``reboot``, ``skip_container``, ``skip_operator`` or ``refuse_local``.
    """
    reasons = []
    has_gpu = bool(gpu.get("pci_devices"))
    loaded = gpu.get("module_version")
    if in_container:
        pass  # the kernel is the machine's underneath: nothing a reboot here would change
    elif method != "none" and has_gpu:
        if not loaded:
            reasons.append("the nvidia kernel module is not loaded yet")
        elif expected_version and not same_version(loaded, expected_version):
            reasons.append(f"the loaded nvidia kernel module is {loaded}, the installed driver {expected_version}")
        if nouveau_loaded:
            reasons.append("nouveau is loaded (blacklisted now; it leaves at the next boot)")
        if boot_kernel and running_kernel and boot_kernel != running_kernel:
            reasons.append(f"the next boot starts kernel {boot_kernel}, installed with the driver "
                           f"(running: {running_kernel})")
    needed = bool(reasons)
    if in_container:
        action = "skip_container"
    elif not needed:
        action = "none"
    elif skip_reboot:
        action = "skip_operator"
    elif connection_local:
        action = "refuse_local"
    else:
        action = "reboot"
    return {"needed": needed, "reasons": reasons, "action": action}


def verify(gpu: dict, expected_version: str | None, reboot_pending: bool) -> dict:
    """Verdict on the running driver: ``status`` (ok, no_gpu, pending_reboot, failed), ``ok`` and ``message``."""
    nvml = gpu.get("nvml", {})
    installed = f"installed driver {expected_version}" if expected_version else "no driver userspace installed"
    if not gpu.get("pci_devices") and not gpu.get("module_version"):
        return {"status": "no_gpu", "ok": True, "message": (
            f"no NVIDIA GPU on this host ({nvml.get('reason', 'none on the PCI bus')}): {installed}; "
            "the NVML check of the running driver needs a GPU and was not run")}
    if nvml.get("available"):
        running = nvml.get("driver_version", "")
        if expected_version and running != "unknown" and not same_version(running, expected_version):
            verdict = {"status": "failed", "ok": False, "message": (
                f"NVML reports driver {running}, but the {installed}")}
        else:
            notes = "; ".join(nvml.get("notes", []))
            return {"status": "ok", "ok": True, "message": f"NVML reports driver {running} on "
                    f"{len(nvml.get('devices', []))} GPU(s), as installed" + (f" ({notes})" if notes else "")}
    else:
        verdict = {"status": "failed", "ok": False, "message": f"NVML is unavailable: {nvml.get('reason', 'unknown')}"}
    if reboot_pending:
        return {"status": "pending_reboot", "ok": True,
                "message": verdict["message"] + "; expected until the host reboots (the reboot was skipped)"}
    return verdict
