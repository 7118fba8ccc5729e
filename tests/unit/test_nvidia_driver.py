"""The nvidia_driver logic: package selection, holds, components, Secure Boot, reboot decision, verification.

Version comparison and the NVML mismatch diagnosis are covered in test_nvidia_plugins.py.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.unit.conftest import REPO, load

KERNEL = "6.8.0-45-generic"
NO_GPU = {"pci_devices": [], "module_version": None,
          "nvml": {"available": False, "reason": "no NVIDIA GPU on the PCI bus", "devices": []}}
GPU = [{"address": "0000:3b:00.0", "device": "0x1eb8", "class": "0x0302"}]


@pytest.fixture(scope="module")
def drv(nvidia_utils: ModuleType) -> ModuleType:
    return load(REPO / "plugins/module_utils/nvidia_driver.py", "ansible.module_utils.nvidia_driver")


@pytest.fixture(scope="module")
def facts_module(drv: ModuleType) -> ModuleType:
    return load(REPO / "plugins/modules/nvidia_driver_facts.py", "nvidia_driver_facts")


@pytest.fixture(scope="module")
def status_module(drv: ModuleType) -> ModuleType:
    return load(REPO / "plugins/modules/nvidia_driver_status.py", "nvidia_driver_status")


def gpu(module_version: str | None = None, nvml: dict | None = None) -> dict:
    return {"pci_devices": GPU, "module_version": module_version,
            "nvml": nvml or {"available": False, "reason": "no NVIDIA driver is loaded on this host", "devices": []}}


# --- versions ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("deb", "upstream"), [
    ("580.178.04-0ubuntu0.24.04.1", "580.178.04"),
    ("550.127.08-1", "550.127.08"),
    ("1:535.54.03-0ubuntu1", "535.54.03"),
    ("580.95.05", "580.95.05"),
])
def test_upstream_version(drv: ModuleType, deb: str, upstream: str) -> None:
    assert drv.upstream_version(deb) == upstream


def test_same_version_is_numeric(drv: ModuleType) -> None:
    assert drv.same_version("580.178.04", "580.178.4")
    assert not drv.same_version("580.178.04", "580.95.05")


def test_userspace_version_follows_the_library_not_the_requested_branch(drv: ModuleType) -> None:
    # Ubuntu's 535-server is transitional on 24.04: the NVML library installed is 580's.
    installed = {"nvidia-utils-535-server": "535.309.01-0ubuntu0.24.04.2",
                 "libnvidia-compute-580-server": "580.178.04-0ubuntu0.24.04.1",
                 "nvidia-container-toolkit": "1.17.8-1"}
    assert drv.userspace_version(installed) == "580.178.04"
    assert drv.userspace_branch(installed) == "580"
    assert drv.userspace_version({"nvidia-utils-580-server": "580.1-1"}) is None


# --- package selection ------------------------------------------------------------------------

def test_ubuntu_prebuilt_packages(drv: ModuleType) -> None:
    assert drv.select_packages("ubuntu", "580", True, "prebuilt", KERNEL, "generic") == [
        "nvidia-headless-no-dkms-580-server", "nvidia-utils-580-server",
        f"linux-modules-nvidia-580-server-{KERNEL}", "linux-modules-nvidia-580-server-generic"]


def test_ubuntu_prebuilt_without_a_flavour_metapackage(drv: ModuleType) -> None:
    specs = drv.select_packages("ubuntu", "580", True, "prebuilt", KERNEL)
    assert specs[-1] == f"linux-modules-nvidia-580-server-{KERNEL}"


def test_ubuntu_dkms_brings_matching_headers(drv: ModuleType) -> None:
    assert drv.select_packages("ubuntu", "580", True, "dkms", KERNEL, "generic-hwe-22.04") == [
        "nvidia-headless-580-server", "nvidia-utils-580-server",
        f"linux-headers-{KERNEL}", "linux-headers-generic-hwe-22.04"]


def test_userspace_only_for_containers(drv: ModuleType) -> None:
    assert drv.select_packages("ubuntu", "580", True, "none", KERNEL, "generic") == [
        "nvidia-headless-no-dkms-580-server", "nvidia-utils-580-server"]


def test_desktop_branch_names(drv: ModuleType) -> None:
    specs = drv.select_packages("ubuntu", "570", False, "none", KERNEL)
    assert specs == ["nvidia-headless-no-dkms-570", "nvidia-utils-570"]


def test_cuda_packages_and_version_pin(drv: ModuleType) -> None:
    assert drv.select_packages("cuda", "580", True, "dkms", KERNEL, None, "580.95.05") == [
        "cuda-drivers-580=580.95.05-*", f"linux-headers-{KERNEL}"]


def test_version_pin_applies_to_driver_packages_only(drv: ModuleType) -> None:
    specs = drv.select_packages("ubuntu", "580", True, "prebuilt", KERNEL, None, "580.126.09")
    assert specs == ["nvidia-headless-no-dkms-580-server=580.126.09-*", "nvidia-utils-580-server=580.126.09-*",
                     f"linux-modules-nvidia-580-server-{KERNEL}"]
    assert drv.package_name(specs[0]) == "nvidia-headless-no-dkms-580-server"


@pytest.mark.parametrize("branch", ["58", "580.1", "r580", ""])
def test_branch_must_be_three_digits(drv: ModuleType, branch: str) -> None:
    with pytest.raises(ValueError, match="three digits"):
        drv.select_packages("ubuntu", branch, True, "none", KERNEL)


@pytest.mark.parametrize(("kernel", "flavour"), [
    ("6.8.0-45-generic", "generic"), ("5.15.0-1070-azure", "azure"), ("6.8.0-1015-aws", "aws"),
    ("6.8.0-45-lowlatency-64k", "lowlatency-64k"), ("6.18.44-fc-v669", None), ("6.1.0-26-amd64", "amd64"),
])
def test_kernel_flavour(drv: ModuleType, kernel: str, flavour: str | None) -> None:
    assert drv.kernel_flavour(kernel) == flavour


def test_flavour_metapackage_prefers_hwe(drv: ModuleType) -> None:
    both = {"linux-image-generic-hwe-22.04", "linux-image-generic"}
    assert drv.flavour_metapackage("generic", "22.04", both) == "generic-hwe-22.04"
    assert drv.flavour_metapackage("generic", "22.04", {"linux-image-generic"}) == "generic"
    assert drv.flavour_metapackage("generic", "22.04", set()) is None  # custom kernel: no metapackage
    assert drv.flavour_metapackage(None, "22.04", both) is None


# --- kernel module method and Secure Boot -----------------------------------------------------

@pytest.mark.parametrize(("requested", "source", "container", "prebuilt", "method"), [
    ("auto", "ubuntu", False, True, "prebuilt"),
    ("auto", "ubuntu", False, False, "dkms"),
    ("prebuilt", "ubuntu", False, True, "prebuilt"),
    ("dkms", "ubuntu", False, True, "dkms"),
    ("none", "ubuntu", True, False, "none"),
    ("auto", "cuda", False, False, "dkms"),
])
def test_resolve_kernel_modules(drv: ModuleType, requested: str, source: str, container: bool, prebuilt: bool,
                                method: str) -> None:
    assert drv.resolve_kernel_modules(requested, source, container, prebuilt, KERNEL) == (method, "")


@pytest.mark.parametrize(("requested", "source", "container", "prebuilt", "text"), [
    ("auto", "ubuntu", True, True, "nvidia_driver_kernel_modules: none"),
    ("prebuilt", "ubuntu", False, False, f"no prebuilt signed NVIDIA modules for the running kernel {KERNEL}"),
    ("prebuilt", "cuda", False, False, "no Ubuntu-signed prebuilt modules"),
    ("signed", "ubuntu", False, True, "must be one of"),
])
def test_resolve_kernel_modules_refuses(drv: ModuleType, requested: str, source: str, container: bool,
                                        prebuilt: bool, text: str) -> None:
    method, error = drv.resolve_kernel_modules(requested, source, container, prebuilt, KERNEL)
    assert method == "" and text in error


def test_secure_boot_stops_unsigned_dkms_with_both_fixes(drv: ModuleType) -> None:
    text = drv.secure_boot_blocker("enabled", "dkms", True, KERNEL)
    assert "Secure Boot is enabled" in text and "unsigned DKMS modules" in text
    assert "nvidia_driver_kernel_modules: prebuilt" in text
    assert "mokutil --import" in text and "MOK manager" in text


def test_secure_boot_without_prebuilt_says_so(drv: ModuleType) -> None:
    assert f"no prebuilt signed modules for the running kernel {KERNEL}" in drv.secure_boot_blocker(
        "enabled", "dkms", False, KERNEL)


@pytest.mark.parametrize(("state", "method"), [
    ("enabled", "prebuilt"), ("enabled", "none"), ("disabled", "dkms"), ("unknown", "dkms")])
def test_secure_boot_allows_signed_or_no_modules(drv: ModuleType, state: str, method: str) -> None:
    assert drv.secure_boot_blocker(state, method, False, KERNEL) == ""


# --- holds and the packages state absent purges ------------------------------------------------

INSTALLED = {
    "nvidia-utils-580-server": "580.178.04-0ubuntu0.24.04.1",
    "libnvidia-compute-580-server": "580.178.04-0ubuntu0.24.04.1",
    "nvidia-firmware-580-server-580.178.04": "580.178.04-0ubuntu0.24.04.1",
    "nvidia-headless-no-dkms-580-server": "580.178.04-0ubuntu0.24.04.1",
    f"linux-modules-nvidia-580-server-{KERNEL}": "6.8.0-45.45",
    "linux-modules-nvidia-580-server-generic": "6.8.0-45.45",
    "cuda-drivers-580": "580.95.05-1",
    "nvidia-dkms-580-open": "580.95.05-1",
    # Not the driver: the container toolkit, other roles' packages, and unrelated names.
    "nvidia-container-toolkit": "1.17.8-1",
    "libnvidia-container1": "1.17.8-1",
    "libnvidia-container-tools": "1.17.8-1",
    "python3-pynvml": "12.535.133-1",
    "nvidia-prime": "0.8.17",
    "linux-image-generic": "6.8.0-45.45",
}


def test_driver_packages_match_every_branch_package_and_nothing_else(drv: ModuleType) -> None:
    assert drv.driver_packages(INSTALLED) == sorted([
        "cuda-drivers-580", "libnvidia-compute-580-server", f"linux-modules-nvidia-580-server-{KERNEL}",
        "linux-modules-nvidia-580-server-generic", "nvidia-dkms-580-open", "nvidia-firmware-580-server-580.178.04",
        "nvidia-headless-no-dkms-580-server", "nvidia-utils-580-server"])


def test_flavour_metapackage_is_not_held(drv: ModuleType) -> None:
    held = drv.hold_packages(INSTALLED)
    assert f"linux-modules-nvidia-580-server-{KERNEL}" in held
    assert "linux-modules-nvidia-580-server-generic" not in held
    assert "nvidia-utils-580-server" in held and "nvidia-container-toolkit" not in held


def test_plain_run_may_install_when_nothing_is_held(drv: ModuleType) -> None:
    assert drv.needs_upgrade_flag(["nvidia-utils-570-server"], INSTALLED, [], "") == []


def test_plain_run_must_not_change_held_packages(drv: ModuleType) -> None:
    held = drv.hold_packages(INSTALLED)
    assert drv.needs_upgrade_flag(["nvidia-utils-580-server", f"linux-modules-nvidia-580-server-{KERNEL}"],
                                  INSTALLED, held, "") == []
    assert drv.needs_upgrade_flag(["nvidia-utils-570-server"], INSTALLED, held, "") == [
        "nvidia-utils-570-server is not installed"]
    assert drv.needs_upgrade_flag(["nvidia-utils-580-server=580.126.09-*"], INSTALLED, held, "580.126.09") == [
        "nvidia-utils-580-server is 580.178.04, not 580.126.09"]
    assert drv.needs_upgrade_flag(["nvidia-utils-580-server=580.178.04-*"], INSTALLED, held, "580.178.04") == []


# --- apt components ----------------------------------------------------------------------------

OWN = "/etc/apt/sources.list.d/nvidia-driver-ubuntu.sources"
INDEXTARGETS = "\n".join([
    "http://archive.ubuntu.com/ubuntu\tnoble\tmain\t/etc/apt/sources.list:1",
    "http://archive.ubuntu.com/ubuntu\tnoble\tmain\t/etc/apt/sources.list:1",
    "http://archive.ubuntu.com/ubuntu\tnoble\tuniverse\t/etc/apt/sources.list:1",
    "http://archive.ubuntu.com/ubuntu\tnoble-updates\tmultiverse\t/etc/apt/sources.list:2",
    f"http://archive.ubuntu.com/ubuntu\tnoble\trestricted\t{OWN}:1",
    f"http://archive.ubuntu.com/ubuntu\tnoble\tmultiverse\t{OWN}:1",
    "https://download.docker.com/linux/ubuntu\tnoble\tstable\t/etc/apt/sources.list.d/docker.sources:1",
    "garbage line",
])


def test_missing_components_ignore_the_roles_own_file(drv: ModuleType) -> None:
    rows = drv.parse_indextargets(INDEXTARGETS)
    assert len(rows) == 7
    missing, mirror = drv.missing_components(rows, "noble", ["restricted", "multiverse"], OWN)
    assert missing == ["restricted", "multiverse"]  # the same answer before and after the role wrote its file
    assert mirror == "http://archive.ubuntu.com/ubuntu"


def test_no_missing_components_on_a_stock_cloud_image(drv: ModuleType) -> None:
    rows = [{"site": "http://azure.archive.ubuntu.com/ubuntu", "release": "noble", "component": c,
             "sourcesentry": "/etc/apt/sources.list.d/ubuntu.sources:1"}
            for c in ("main", "restricted", "universe", "multiverse")]
    assert drv.missing_components(rows, "noble", ["restricted", "multiverse"], OWN) == (
        [], "http://azure.archive.ubuntu.com/ubuntu")


# --- reboot decision ----------------------------------------------------------------------------

def decide(drv: ModuleType, gpu_facts: dict, **kwargs: object) -> dict:
    args = {"expected_version": "580.178.04", "method": "prebuilt", "nouveau_loaded": False,
            "in_container": False, "skip_reboot": False, "connection_local": False}
    args.update(kwargs)
    return drv.reboot_decision(gpu_facts, **args)


def test_no_reboot_without_a_gpu(drv: ModuleType) -> None:
    assert decide(drv, NO_GPU) == {"needed": False, "reasons": [], "action": "none"}


def test_no_reboot_when_the_installed_module_runs(drv: ModuleType) -> None:
    assert decide(drv, gpu("580.178.04"))["action"] == "none"


def test_reboot_when_the_module_is_not_loaded(drv: ModuleType) -> None:
    result = decide(drv, gpu(None))
    assert result["action"] == "reboot" and result["reasons"] == ["the nvidia kernel module is not loaded yet"]


def test_reboot_when_an_older_module_is_loaded(drv: ModuleType) -> None:
    result = decide(drv, gpu("570.86.15"), nouveau_loaded=True)
    assert result["action"] == "reboot"
    assert result["reasons"] == ["the loaded nvidia kernel module is 570.86.15, the installed driver 580.178.04",
                                 "nouveau is loaded (blacklisted now; it leaves at the next boot)"]


def test_reboot_when_nouveau_holds_the_gpu(drv: ModuleType) -> None:
    assert decide(drv, gpu("580.178.04"), nouveau_loaded=True)["action"] == "reboot"


def test_userspace_only_never_needs_a_reboot(drv: ModuleType) -> None:
    assert decide(drv, gpu(None), method="none")["action"] == "none"


def test_container_is_never_rebooted(drv: ModuleType) -> None:
    assert decide(drv, gpu(None), in_container=True) == {"needed": False, "reasons": [], "action": "skip_container"}


def test_operator_skips_the_reboot(drv: ModuleType) -> None:
    result = decide(drv, gpu(None), skip_reboot=True, connection_local=True)
    assert result["needed"] and result["action"] == "skip_operator"


def test_connection_local_refuses_to_reboot(drv: ModuleType) -> None:
    assert decide(drv, gpu(None), connection_local=True)["action"] == "refuse_local"


# --- verification ---------------------------------------------------------------------------------

def test_verify_without_a_gpu_says_so_plainly(drv: ModuleType) -> None:
    result = drv.verify(NO_GPU, "580.178.04", False)
    assert result["status"] == "no_gpu" and result["ok"]
    assert result["message"].startswith(
        "no NVIDIA GPU on this host (no NVIDIA GPU on the PCI bus): installed driver 580.178.04")


def test_verify_ok(drv: ModuleType) -> None:
    nvml = {"available": True, "driver_version": "580.178.04", "devices": [{"name": "Tesla T4"}]}
    result = drv.verify(gpu("580.178.04", nvml), "580.178.04", False)
    assert result == {"status": "ok", "ok": True, "message": "NVML reports driver 580.178.04 on 1 GPU(s), as installed"}


def test_verify_wrong_running_version_fails(drv: ModuleType) -> None:
    nvml = {"available": True, "driver_version": "570.86.15", "devices": []}
    result = drv.verify(gpu("570.86.15", nvml), "580.178.04", False)
    assert not result["ok"]
    assert "NVML reports driver 570.86.15, but the installed driver 580.178.04" in result["message"]


def test_verify_mismatch_carries_the_diagnosis(drv: ModuleType, nvidia_utils: ModuleType) -> None:
    reason = nvidia_utils.diagnose_nvml_error("Driver/library version mismatch", "570.86.15")
    result = drv.verify(gpu("570.86.15", {"available": False, "reason": reason}), "580.178.04", False)
    assert result["status"] == "failed" and "kernel module 570.86.15" in result["message"]
    assert "reboot the host" in result["message"]


def test_verify_pending_reboot_is_not_a_failure(drv: ModuleType) -> None:
    result = drv.verify(gpu(None), "580.178.04", True)
    assert result["status"] == "pending_reboot" and result["ok"]
    assert result["message"].endswith("expected until the host reboots (the reboot was skipped)")


# --- the modules load with their dependencies -------------------------------------------------------

def test_modules_import(facts_module: ModuleType, status_module: ModuleType) -> None:
    assert callable(facts_module.main) and callable(status_module.main)
    assert facts_module.os_release("/nonexistent") == {}
