"""Verify the converged host: Ubuntu's real driver packages installed and held, nouveau blacklisted,
only the missing components added to apt, and the NVML check reporting the missing GPU plainly."""

from __future__ import annotations

import json
import re

BRANCH = "580-server"
# auto picked the open modules (no GPU: NVIDIA's default since R560); userspace only in a container.
PACKAGES = (f"nvidia-headless-no-dkms-{BRANCH}-open", f"nvidia-utils-{BRANCH}", f"libnvidia-compute-{BRANCH}")
DRIVER_RE = re.compile(r"^(lib)?nvidia-.*-\d{3}")
SOURCES = "/etc/apt/sources.list.d/nvidia-driver-ubuntu.sources"
BLACKLIST = "/etc/modprobe.d/nvidia-driver-blacklist-nouveau.conf"
FACTS = "/etc/ansible/facts.d/nvidia_driver.fact"
RECORD = "/var/lib/appliance-host/nvidia_driver.json"


def test_driver_packages_installed(host) -> None:  # type: ignore[no-untyped-def]
    for name in PACKAGES:
        assert host.package(name).is_installed, name
    # The userspace library NVML lives in, found by the dynamic linker.
    assert "libnvidia-ml.so.1" in host.check_output("ldconfig -p")


def test_no_kernel_module_packages_in_a_container(host) -> None:  # type: ignore[no-untyped-def]
    listed = host.check_output("dpkg-query -W -f '${Package}\\n'").splitlines()
    assert not [name for name in listed if name.startswith(("linux-modules-nvidia", "nvidia-dkms", "linux-headers"))]


def test_every_driver_package_is_held(host) -> None:  # type: ignore[no-untyped-def]
    # Package name (without :arch) and the selection, the first word of the status.
    listed = host.check_output("dpkg-query -W -f '${Package} ${Status}\\n'").splitlines()
    selections = {line.split()[0]: line.split()[1] for line in listed}
    driver = {name: state for name, state in selections.items() if DRIVER_RE.match(name)}
    assert set(PACKAGES) <= set(driver)
    assert {name for name, state in driver.items() if state != "hold"} == set()


def test_only_the_missing_pockets_and_components_are_added(host) -> None:  # type: ignore[no-untyped-def]
    """prepare gave the host restricted for the release and -updates pockets: the role adds multiverse
    there and both components for -security, and nothing the host has (apt warns about duplicates)."""
    text = host.file(SOURCES).content_string
    codename = host.check_output(". /etc/os-release && echo $VERSION_CODENAME")
    stanzas = [dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith("#"))
               for block in text.split("\n\n")]
    assert [(s["Suites"], s["Components"]) for s in stanzas] == [
        (f"{codename} {codename}-updates", "multiverse"), (f"{codename}-security", "restricted multiverse")]
    assert all(s["Signed-By"] == "/usr/share/keyrings/ubuntu-archive-keyring.gpg" for s in stanzas)
    update = host.run("apt-get update")
    assert update.rc == 0 and "configured multiple times" not in update.stderr
    # apt really takes the driver from the restricted component.
    assert "restricted" in host.check_output(f"apt-cache policy nvidia-utils-{BRANCH}")


def test_nouveau_blacklisted_for_modprobe_and_initramfs(host) -> None:  # type: ignore[no-untyped-def]
    blacklist = host.file(BLACKLIST)
    assert blacklist.user == "root" and blacklist.mode == 0o644
    assert "blacklist nouveau" in blacklist.content_string
    assert "options nouveau modeset=0" in blacklist.content_string
    # modprobe (and the initramfs, which copies /etc/modprobe.d) reads it.
    config = host.check_output("modprobe --showconfig")
    assert "blacklist nouveau" in config and "options nouveau modeset=0" in config
    # No kernel in the container: there is no initramfs, and the role must not have invented one.
    kernel = host.check_output("uname -r")
    assert not host.file(f"/boot/initrd.img-{kernel}").exists


def test_nvml_check_reports_no_gpu(host) -> None:  # type: ignore[no-untyped-def]
    facts = json.loads(host.file(FACTS).content_string)
    assert facts["verify"] == "no_gpu"
    assert facts["verify_message"].startswith("no NVIDIA GPU on this host (no NVIDIA GPU on the PCI bus)")
    assert (facts["kernel_modules"], facts["module_install"], facts["fabricmanager"]) == ("open", "none", True)
    assert facts["version"].startswith("580.")
    assert set(PACKAGES) <= set(facts["held"])
    # nvidia-smi from the real package runs and fails plainly: no driver is loaded here.
    result = host.run("nvidia-smi")
    assert result.rc != 0 and "driver" in (result.stdout + result.stderr).lower()


def test_fabric_manager_matches_the_driver_and_is_enabled(host) -> None:  # type: ignore[no-untyped-def]
    fabric = host.package("nvidia-fabricmanager-580")
    assert fabric.is_installed and host.package("libnvidia-nscq-580").is_installed
    assert fabric.version == host.package(f"nvidia-utils-{BRANCH}").version
    assert host.service("nvidia-fabricmanager").is_enabled  # it starts once the nvidia module is loaded


def test_record_claims_what_the_role_added(host) -> None:  # type: ignore[no-untyped-def]
    record = json.loads(host.file(RECORD).content_string)
    assert f"nvidia-headless-no-dkms-{BRANCH}-open" in record["packages"]
    # prepare installed these by hand: the host's own, not the role's (the role holds them, and says so).
    assert f"nvidia-utils-{BRANCH}" not in record["packages"] and "bc" not in record["packages"]
    assert f"nvidia-utils-{BRANCH}" in record["holds"]
