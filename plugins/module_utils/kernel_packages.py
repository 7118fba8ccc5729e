"""Ubuntu kernel packages: flavours, the metapackages that move the kernel, the kernels a host can boot.

No Ansible imports. *packages* arguments are ``parse_dpkg_query`` results (``debian_packages.py``).
Kernel releases look like ``6.8.0-45-generic``: version ``6.8.0``, ABI ``45``, flavour ``generic``.
"""

from __future__ import annotations

import re

from ansible.module_utils.nvidia import parse_version

KERNEL_RE = re.compile(r"(\d+\.\d+\.\d+)-(\d+)-([a-z][a-z0-9-]*)")
# linux-image-6.8.0-45-generic, linux-image-unsigned-6.8.0-45-generic: one kernel.
KERNEL_IMAGE_RE = re.compile(r"^linux-image-(?:unsigned-)?(\d+\.\d+\.\d+-\d+-[a-z][a-z0-9-]*)$")
# linux-image-generic, linux-image-virtual-hwe-22.04, linux-image-aws-lts-22.04: a metapackage that
# always depends on the newest kernel of its stream (no kernel release in the name).
IMAGE_META_RE = re.compile(r"^linux-image-(?!unsigned-)([a-z][a-z0-9.-]*)$")


def kernel_flavour(kernel_release: str) -> str | None:
    """Ubuntu kernel flavour of a release string (``6.8.0-45-generic`` -> ``generic``), None if not Ubuntu's."""
    match = KERNEL_RE.fullmatch(kernel_release)
    return match.group(3) if match else None


def kernel_sort_key(kernel_release: str) -> tuple[int, ...]:
    """Sort key that orders kernels as GRUB does (numerically: ``6.8.0-100`` after ``6.8.0-99``)."""
    match = KERNEL_RE.fullmatch(kernel_release)
    return parse_version(f"{match.group(1)}.{match.group(2)}") if match else (0,)


def is_kernel_metapackage(name: str, data: dict) -> bool:
    """A package that moves the kernel: built from a ``linux-meta*`` source (linux-generic,
    linux-image-virtual, linux-headers-generic-hwe-22.04, linux-image-aws-lts-22.04, ...)."""
    return data["source"].startswith("linux-meta") and not KERNEL_IMAGE_RE.match(name)


def kernel_metapackages(packages: dict[str, dict]) -> list[str]:
    """Installed kernel metapackages, sorted: what the driver's hold keeps from installing a new kernel."""
    return sorted(name for name, data in packages.items() if data["installed"] and is_kernel_metapackage(name, data))


def image_metapackages(packages: dict[str, dict], kernel: str) -> list[str]:
    """Flavours (``linux-image-<flavour>``) of the installed image metapackages that follow *kernel*.

    A metapackage follows the kernel when it depends on that kernel's image, or, on a host that has
    not rebooted since the metapackage moved on, on an image of the same version and flavour (same
    stream, newer ABI). ``virtual`` images run the ``generic`` kernel, so ``linux-image-virtual-hwe-22.04``
    is found for ``6.8.0-45-generic``.
    """
    match = KERNEL_RE.fullmatch(kernel)
    if not match:
        return []
    version, flavour = match.group(1), match.group(3)
    same_stream = re.compile(rf"^linux-image-(?:unsigned-)?{re.escape(version)}-\d+-{re.escape(flavour)}$")
    exact, stream = [], []
    for name, data in packages.items():
        meta = IMAGE_META_RE.match(name)
        if not meta or not data["installed"] or not is_kernel_metapackage(name, data):
            continue
        names = {alternative for group in data["depends"] for alternative in group}
        if {f"linux-image-{kernel}", f"linux-image-unsigned-{kernel}"} & names:
            exact.append(meta.group(1))
        elif any(same_stream.match(dep) for dep in names):
            stream.append(meta.group(1))
    return sorted(exact) or sorted(stream)


def modules_meta_candidates(image_flavours: list[str]) -> list[str]:
    """Flavour suffixes for the ``linux-modules-nvidia-<branch>-<suffix>`` metapackage, best first.

    Ubuntu builds NVIDIA module metapackages for the kernel flavours (generic, generic-hwe-22.04,
    aws-lts-22.04, ...), not for ``virtual``, which runs the generic kernel: ``virtual-hwe-22.04`` maps
    to ``generic-hwe-22.04``.
    """
    candidates: list[str] = []
    for flavour in image_flavours:
        for candidate in (re.sub(r"^virtual", "generic", flavour), flavour):
            if candidate not in candidates:
                candidates.append(candidate)
    return candidates


def installed_kernels(packages: dict[str, dict]) -> list[str]:
    """Kernel releases with an installed image, newest first (the one GRUB boots by default first)."""
    kernels = {match.group(1) for name, data in packages.items()
               if data["installed"] and (match := KERNEL_IMAGE_RE.match(name))}
    return sorted(kernels, key=lambda k: (kernel_sort_key(k), k), reverse=True)


def boot_problem(kernels: list[str], with_nvidia_module: set[str], running: str) -> str:
    """Why the next boot would come up without the nvidia module ('' when it would not).

    *kernels* are the installed kernels, newest first (GRUB boots the newest by default);
    *with_nvidia_module* the kernels that have an nvidia module (prebuilt or built by DKMS).
    """
    if not kernels:
        return ""
    newest = kernels[0]
    if newest in with_nvidia_module:
        return ""
    others = ", ".join(k for k in kernels if k in with_nvidia_module) or "none"
    return (f"the next boot starts kernel {newest} (the newest installed; running now: {running}), which has no "
            f"nvidia module (kernels with one: {others}); the GPUs would be unusable after a reboot")
