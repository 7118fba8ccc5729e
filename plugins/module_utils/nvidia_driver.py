"""NVIDIA driver install logic shared by the nvidia_driver modules and unit tests (no Ansible imports).

Package selection, the packages to hold, which Ubuntu components are missing, the reboot decision and
the verification verdict. Version comparison and NVML diagnosis come from ``nvidia.py``.
"""

from __future__ import annotations

import re

from ansible.module_utils.nvidia import parse_version

# Driver packages of one branch, from Ubuntu's archive or NVIDIA's CUDA repository: every name
# carries the branch number (nvidia-utils-580-server, libnvidia-compute-580, nvidia-dkms-580,
# cuda-drivers-580, linux-modules-nvidia-580-server-6.8.0-45-generic, nvidia-firmware-580-server-580.1.2).
# The container toolkit (nvidia-container-toolkit, libnvidia-container1) carries none and is not matched.
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
USERSPACE_RE = re.compile(r"^libnvidia-compute-(\d{3})(?:-server)?$")
CONTAINER_TYPES = ("docker", "container", "containerd", "lxc", "podman", "systemd-nspawn", "openvz")
KERNEL_MODULE_CHOICES = ("auto", "prebuilt", "dkms", "none")


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


def kernel_flavour(kernel_release: str) -> str | None:
    """Ubuntu kernel flavour of a release string (``6.8.0-45-generic`` -> ``generic``), None if not Ubuntu's."""
    match = re.fullmatch(r"\d+\.\d+\.\d+-\d+-([a-z][a-z0-9-]*)", kernel_release)
    return match.group(1) if match else None


def flavour_metapackage(flavour: str | None, release: str, installed: set[str] | dict[str, str]) -> str | None:
    """Flavour suffix whose kernel metapackage is installed (HWE first), so modules follow kernel upgrades.

    ``generic-hwe-22.04`` when ``linux-image-generic-hwe-22.04`` is installed, ``generic`` when
    ``linux-image-generic`` is; None when neither (a custom kernel: re-run the role after a kernel change).
    """
    if not flavour:
        return None
    for candidate in (f"{flavour}-hwe-{release}", flavour):
        if f"linux-image-{candidate}" in installed:
            return candidate
    return None


def resolve_kernel_modules(requested: str, source: str, in_container: bool, prebuilt_available: bool,
                           kernel: str) -> tuple[str, str]:
    """(method, error): how the kernel modules are installed, or an error saying why none can be chosen.

    method is ``prebuilt`` (Ubuntu's signed linux-modules-nvidia package for the running kernel),
    ``dkms`` (built on the host, unsigned) or ``none`` (userspace only).
    """
    if requested not in KERNEL_MODULE_CHOICES:
        return "", f"nvidia_driver_kernel_modules must be one of {', '.join(KERNEL_MODULE_CHOICES)}, not {requested!r}"
    if requested == "none":
        return "none", ""
    if in_container:
        return "", (
            "this host is a container: it shares the kernel of the machine it runs on, so no kernel module "
            "can be installed or loaded here. Fix: install the driver on that machine, and set "
            "nvidia_driver_kernel_modules: none here for the userspace packages only"
        )
    if source == "cuda":
        if requested == "prebuilt":
            return "", ("NVIDIA's CUDA repository has no Ubuntu-signed prebuilt modules. Fix: use "
                        "nvidia_driver_source: ubuntu for prebuilt modules, or nvidia_driver_kernel_modules: dkms")
        return "dkms", ""
    if requested == "dkms":
        return "dkms", ""
    if prebuilt_available:
        return "prebuilt", ""
    if requested == "prebuilt":
        return "", (f"Ubuntu has no prebuilt signed NVIDIA modules for the running kernel {kernel}. Fix: boot a "
                    "current Ubuntu kernel (apt full-upgrade, reboot), or set nvidia_driver_kernel_modules: dkms")
    return "dkms", ""


def select_packages(source: str, branch: str, server: bool, method: str, kernel: str,
                    meta: str | None = None, version: str = "") -> list[str]:
    """Apt package specs to install: driver packages (pinned to *version* when given), modules, headers."""
    suffix = branch_suffix(source, branch, server)
    if source == "cuda":
        driver = [f"cuda-drivers-{suffix}"] if method == "dkms" else [
            f"nvidia-headless-no-dkms-{suffix}", f"nvidia-utils-{suffix}"]
    elif method == "dkms":
        driver = [f"nvidia-headless-{suffix}", f"nvidia-utils-{suffix}"]
    else:
        driver = [f"nvidia-headless-no-dkms-{suffix}", f"nvidia-utils-{suffix}"]
    if version:
        driver = [f"{name}={version}-*" for name in driver]
    kernel_packages: list[str] = []
    if method == "prebuilt":
        kernel_packages = [f"linux-modules-nvidia-{suffix}-{kernel}"]
        kernel_packages += [f"linux-modules-nvidia-{suffix}-{meta}"] if meta else []
    elif method == "dkms":
        kernel_packages = [f"linux-headers-{kernel}"] + ([f"linux-headers-{meta}"] if meta else [])
    return driver + kernel_packages


def package_name(spec: str) -> str:
    """Name of an apt spec (``nvidia-utils-580-server=580.1-*`` -> ``nvidia-utils-580-server``)."""
    return spec.split("=", 1)[0]


def driver_packages(installed: dict[str, str] | set[str]) -> list[str]:
    """Installed driver packages (of any branch), sorted: what is held, and purged by state absent."""
    return sorted(name for name in installed if DRIVER_PACKAGE_RE.match(name))


def hold_packages(installed: dict[str, str] | set[str]) -> list[str]:
    """Driver packages to hold: all of them except the kernel-flavour metapackages.

    ``linux-modules-nvidia-580-server-generic`` must stay free to follow kernel upgrades;
    ``linux-modules-nvidia-580-server-6.8.0-45-generic`` (one kernel) is held with the driver.
    """
    return [name for name in driver_packages(installed)
            if not name.startswith("linux-") or re.search(r"-\d+\.\d+\.\d+-\d+", name)]


def secure_boot_blocker(secure_boot: str, method: str, prebuilt_available: bool, kernel: str) -> str:
    """Why the install must stop under Secure Boot with this module method, with the fix ('' = go on)."""
    if secure_boot != "enabled" or method != "dkms":
        return ""
    prebuilt = (f"Ubuntu has prebuilt signed modules for the running kernel {kernel}: set nvidia_driver_source: ubuntu "
                "and nvidia_driver_kernel_modules: prebuilt" if prebuilt_available else
                f"Ubuntu has no prebuilt signed modules for the running kernel {kernel}: boot a current Ubuntu "
                "kernel (apt full-upgrade, reboot), then use nvidia_driver_kernel_modules: prebuilt")
    return (
        "Secure Boot is enabled and this install builds unsigned DKMS modules, which the kernel refuses to load. "
        f"Fix, either: (1) {prebuilt}; or (2) enroll a Machine Owner Key that DKMS signs with: "
        "sudo update-secureboot-policy --new-key && sudo mokutil --import /var/lib/shim-signed/mok/MOK.der, "
        "reboot, confirm the key in the blue MOK manager at the console, then re-run; "
        "or (3) disable Secure Boot in the firmware"
    )


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


def missing_components(targets: list[dict[str, str]], codename: str, wanted: list[str],
                       own_file: str) -> tuple[list[str], str | None]:
    """(components of *wanted* not enabled for *codename* by other sources, that suite's mirror).

    *targets* are ``apt-get indextargets`` rows with keys site, release, component, sourcesentry;
    rows from *own_file* (the role's own .sources file) are ignored, so a re-run decides the same.
    """
    enabled: set[str] = set()
    mirror = None
    for row in targets:
        if row.get("sourcesentry", "").split(":", 1)[0] == own_file or row.get("release") != codename:
            continue
        enabled.add(row.get("component", ""))
        if row.get("component") == "main" and mirror is None:
            mirror = row.get("site")
    return [c for c in wanted if c not in enabled], mirror


def parse_indextargets(text: str) -> list[dict[str, str]]:
    """Rows of ``apt-get indextargets --format '$(SITE)\\t$(RELEASE)\\t$(COMPONENT)\\t$(SOURCESENTRY)'``."""
    rows = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 4:
            rows.append({"site": parts[0], "release": parts[1], "component": parts[2], "sourcesentry": parts[3]})
    return rows


def needs_upgrade_flag(requested: list[str], installed: dict[str, str], held: list[str], version: str) -> list[str]:
    """Changes that a plain run must not make to held driver packages (empty: none).

    With the packages held, installing another branch or version is a deliberate upgrade
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
                    in_container: bool, skip_reboot: bool, connection_local: bool) -> dict:
    """Whether the host must reboot for the installed driver to run, and what the role does about it.

    *gpu* is the nvidia_gpu_facts result. Returns ``needed`` (bool), ``reasons`` (list) and ``action``:
    ``none``, ``reboot``, ``skip_container``, ``skip_operator`` or ``refuse_local``.
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
        if expected_version and not same_version(running, expected_version):
            verdict = {"status": "failed", "ok": False, "message": (
                f"NVML reports driver {running}, but the {installed}")}
        else:
            return {"status": "ok", "ok": True, "message": f"NVML reports driver {running} on "
                    f"{len(nvml.get('devices', []))} GPU(s), as installed"}
    else:
        verdict = {"status": "failed", "ok": False, "message": f"NVML is unavailable: {nvml.get('reason', 'unknown')}"}
    if reboot_pending:
        return {"status": "pending_reboot", "ok": True,
                "message": verdict["message"] + "; expected until the host reboots (the reboot was skipped)"}
    return verdict
