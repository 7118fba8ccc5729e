"""The nvidia_driver logic: module flavour, package selection, pins, holds, Secure Boot, reboot, verification.

Version comparison and the NVML mismatch diagnosis are in test_nvidia_plugins.py; the selection against
the recorded Ubuntu archive in test_nvidia_archive.py; kernels and apt components in test_kernel_packages.py.
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
def facts_module(drv: ModuleType, kernels: ModuleType, apt_sources: ModuleType) -> ModuleType:
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
    assert drv.select_packages("ubuntu", "580", True, "proprietary", "prebuilt", KERNEL, "generic") == [
        "nvidia-headless-no-dkms-580-server", "nvidia-utils-580-server",
        f"linux-modules-nvidia-580-server-{KERNEL}", "linux-modules-nvidia-580-server-generic"]


def test_ubuntu_open_prebuilt_packages(drv: ModuleType) -> None:
    assert drv.select_packages("ubuntu", "580", True, "open", "prebuilt", KERNEL, "generic-hwe-24.04") == [
        "nvidia-headless-no-dkms-580-server-open", "nvidia-utils-580-server",
        f"linux-modules-nvidia-580-server-open-{KERNEL}", "linux-modules-nvidia-580-server-open-generic-hwe-24.04"]


def test_ubuntu_prebuilt_without_a_flavour_metapackage(drv: ModuleType) -> None:
    specs = drv.select_packages("ubuntu", "580", True, "proprietary", "prebuilt", KERNEL)
    assert specs[-1] == f"linux-modules-nvidia-580-server-{KERNEL}"


def test_ubuntu_dkms_brings_matching_headers(drv: ModuleType) -> None:
    assert drv.select_packages("ubuntu", "580", True, "open", "dkms", KERNEL, None,
                               headers_meta="virtual-hwe-22.04") == [
        "nvidia-headless-580-server-open", "nvidia-utils-580-server",
        f"linux-headers-{KERNEL}", "linux-headers-virtual-hwe-22.04"]


def test_userspace_only_for_containers(drv: ModuleType) -> None:
    assert drv.select_packages("ubuntu", "580", True, "proprietary", "none", KERNEL, "generic") == [
        "nvidia-headless-no-dkms-580-server", "nvidia-utils-580-server"]


def test_desktop_branch_names(drv: ModuleType) -> None:
    specs = drv.select_packages("ubuntu", "570", False, "open", "none", KERNEL)
    assert specs == ["nvidia-headless-no-dkms-570-open", "nvidia-utils-570"]


def test_cuda_packages_and_version_pin(drv: ModuleType) -> None:
    assert drv.select_packages("cuda", "580", True, "proprietary", "dkms", KERNEL, None, "580.95.05") == [
        "cuda-drivers-580=580.95.05-*", f"linux-headers-{KERNEL}"]
    assert drv.select_packages("cuda", "580", True, "open", "dkms", KERNEL)[0] == "nvidia-open-580"


def test_fabricmanager_is_pinned_with_the_driver(drv: ModuleType) -> None:
    specs = drv.select_packages("ubuntu", "580", True, "open", "none", KERNEL, None, "580.178.04", True)
    assert specs == ["nvidia-headless-no-dkms-580-server-open=580.178.04-*", "nvidia-utils-580-server=580.178.04-*",
                     "nvidia-fabricmanager-580=580.178.04-*", "libnvidia-nscq-580=580.178.04-*"]


def test_version_pin_applies_to_driver_packages_only(drv: ModuleType) -> None:
    specs = drv.select_packages("ubuntu", "580", True, "proprietary", "prebuilt", KERNEL, None, "580.126.09")
    assert specs == ["nvidia-headless-no-dkms-580-server=580.126.09-*", "nvidia-utils-580-server=580.126.09-*",
                     f"linux-modules-nvidia-580-server-{KERNEL}"]
    assert drv.package_name(specs[0]) == "nvidia-headless-no-dkms-580-server"


@pytest.mark.parametrize("branch", ["58", "580.1", "r580", ""])
def test_branch_must_be_three_digits(drv: ModuleType, branch: str) -> None:
    with pytest.raises(ValueError, match="three digits"):
        drv.select_packages("ubuntu", branch, True, "open", "none", KERNEL)


# --- open or proprietary modules --------------------------------------------------------------------

T4, V100, B200, GH200, A100 = "0x1eb8", "0x1db5", "0x2901", "0x2342", "0x20b0"


def flavour(drv: ModuleType, requested: str, *devices: str, branch: str = "580", machine: str = "x86_64",
            capability: str | None = None) -> tuple[str, str, str]:
    gpus = [{"device": d, "compute_capability": capability} for d in devices]
    result: tuple[str, str, str] = drv.module_flavour(requested, branch, gpus, machine)
    return result


@pytest.mark.parametrize(("devices", "branch", "machine", "chosen", "why"), [
    ((T4, A100), "580", "x86_64", "open", "NVIDIA's default for them since R560"),
    ((), "580", "x86_64", "open", "no GPU on the PCI bus"),
    ((V100,), "580", "x86_64", "proprietary", "older than Turing (0x1db5)"),
    ((T4,), "550", "x86_64", "proprietary", "branch 550 predates R560"),
    ((B200,), "580", "x86_64", "open", "Blackwell and Grace Hopper run only the open modules"),
    ((GH200,), "580", "aarch64", "open", "Grace Hopper"),
    ((GH200,), "550", "x86_64", "proprietary", "predates R560"),
])
def test_auto_flavour_says_which_and_why(drv: ModuleType, devices: tuple[str, ...], branch: str, machine: str,
                                         chosen: str, why: str) -> None:
    result, reason, error = flavour(drv, "auto", *devices, branch=branch, machine=machine)
    assert (result, error) == (chosen, "") and why in reason


def test_compute_capability_decides_over_the_device_id(drv: ModuleType) -> None:
    assert flavour(drv, "auto", "0xffff", capability="6.1")[0] == "proprietary"
    assert flavour(drv, "auto", "0x0001", capability="10.0")[0] == "open"


@pytest.mark.parametrize(("requested", "devices", "machine", "text"), [
    ("open", (V100,), "x86_64", "do not support GPUs older than Turing (0x1db5)"),
    ("proprietary", (B200,), "x86_64", "do not drive 0x2901"),
    ("proprietary", (GH200,), "aarch64", "do not drive Grace Hopper"),
    ("auto", (V100, B200), "x86_64", "mixes GPUs older than Turing (0x1db5)"),
    ("signed", (), "x86_64", "must be one of auto, open, proprietary"),
])
def test_flavour_refuses_what_the_gpus_cannot_run(drv: ModuleType, requested: str, devices: tuple[str, ...],
                                                   machine: str, text: str) -> None:
    result, _, error = flavour(drv, requested, *devices, machine=machine)
    assert result == "" and text in error and ("Fix:" in error or "must be one of" in error)


def test_open_needs_r515(drv: ModuleType) -> None:
    assert "start with R515" in flavour(drv, "open", T4, branch="470")[2]


@pytest.mark.parametrize(("setting", "switches", "wanted", "why"), [
    ("auto", [], False, "no NVSwitch"),
    ("auto", [{"device": "0x22a3"}] * 4, True, "4 NVSwitch(es)"),
    ("always", [], True, "requested"),
    ("never", [{"device": "0x22a3"}], False, "not wanted"),
])
def test_fabricmanager_follows_the_nvswitches(drv: ModuleType, setting: str, switches: list[dict[str, str]],
                                              wanted: bool, why: str) -> None:
    result, reason = drv.fabricmanager_wanted(setting, switches)
    assert result is wanted and why in reason


# --- kernel module method and Secure Boot -----------------------------------------------------

@pytest.mark.parametrize(("requested", "source", "container", "prebuilt", "method"), [
    ("auto", "ubuntu", False, True, "prebuilt"),
    ("auto", "ubuntu", False, False, "dkms"),
    ("prebuilt", "ubuntu", False, True, "prebuilt"),
    ("dkms", "ubuntu", False, True, "dkms"),
    ("none", "ubuntu", True, False, "none"),
    ("auto", "cuda", False, False, "dkms"),
])
def test_resolve_module_install(drv: ModuleType, requested: str, source: str, container: bool, prebuilt: bool,
                                method: str) -> None:
    assert drv.resolve_module_install(requested, source, container, prebuilt, KERNEL) == (method, "")


@pytest.mark.parametrize(("requested", "source", "container", "prebuilt", "text"), [
    ("auto", "ubuntu", True, True, "nvidia_driver_module_install: none"),
    ("prebuilt", "ubuntu", False, False, f"no prebuilt signed NVIDIA modules for the kernel {KERNEL}"),
    ("prebuilt", "cuda", False, False, "no Ubuntu-signed prebuilt modules"),
    ("signed", "ubuntu", False, True, "must be one of"),
])
def test_resolve_module_install_refuses(drv: ModuleType, requested: str, source: str, container: bool,
                                       prebuilt: bool, text: str) -> None:
    method, error = drv.resolve_module_install(requested, source, container, prebuilt, KERNEL)
    assert method == "" and text in error


def test_secure_boot_stops_unsigned_dkms_with_both_fixes(drv: ModuleType) -> None:
    text = drv.secure_boot_blocker("enabled", "dkms", True, KERNEL)
    assert "Secure Boot is enabled" in text and "unsigned DKMS modules" in text
    assert "nvidia_driver_module_install: prebuilt" in text
    assert "mokutil --import" in text and "MOK manager" in text


def test_secure_boot_without_prebuilt_says_so(drv: ModuleType) -> None:
    assert f"no prebuilt signed modules for the kernel {KERNEL}" in drv.secure_boot_blocker(
        "enabled", "dkms", False, KERNEL)


@pytest.mark.parametrize(("state", "method"), [
    ("enabled", "prebuilt"), ("enabled", "none"), ("disabled", "dkms"), ("unknown", "dkms")])
def test_secure_boot_allows_signed_or_no_modules(drv: ModuleType, state: str, method: str) -> None:
    assert drv.secure_boot_blocker(state, method, False, KERNEL) == ""


# --- holds ------------------------------------------------------------------------------------------

INSTALLED = {
    "nvidia-utils-580-server": "580.178.04-0ubuntu0.24.04.1",
    "libnvidia-compute-580-server": "580.178.04-0ubuntu0.24.04.1",
    "nvidia-firmware-580-server-580.178.04": "580.178.04-0ubuntu0.24.04.1",
    "nvidia-headless-no-dkms-580-server": "580.178.04-0ubuntu0.24.04.1",
    f"linux-modules-nvidia-580-server-{KERNEL}": "6.8.0-45.45",
    "linux-modules-nvidia-580-server-generic": "6.8.0-45.45",
    "linux-modules-nvidia-580-server-open-generic-hwe-24.04": "6.8.0-45.45",
    "cuda-drivers-580": "580.95.05-1",
    "nvidia-dkms-580-open": "580.95.05-1",
    "nvidia-open-580": "580.95.05-1",
    "nvidia-fabricmanager-580": "580.178.04-0ubuntu0.24.04.1",
    # Not the driver: the container toolkit, other roles' packages, and unrelated names.
    "nvidia-container-toolkit": "1.17.8-1",
    "libnvidia-container1": "1.17.8-1",
    "libnvidia-container-tools": "1.17.8-1",
    "python3-pynvml": "12.535.133-1",
    "nvidia-prime": "0.8.17",
    "linux-image-generic": "6.8.0-45.45",
}
KERNEL_METAS = ["linux-generic", "linux-headers-generic", "linux-image-generic"]


def test_driver_packages_match_every_branch_package_and_nothing_else(drv: ModuleType) -> None:
    assert drv.driver_packages(INSTALLED) == sorted([
        "cuda-drivers-580", "libnvidia-compute-580-server", f"linux-modules-nvidia-580-server-{KERNEL}",
        "linux-modules-nvidia-580-server-generic", "linux-modules-nvidia-580-server-open-generic-hwe-24.04",
        "nvidia-dkms-580-open", "nvidia-fabricmanager-580", "nvidia-firmware-580-server-580.178.04",
        "nvidia-headless-no-dkms-580-server", "nvidia-open-580", "nvidia-utils-580-server"])


def test_the_kernel_is_held_with_the_driver(drv: ModuleType) -> None:
    held = drv.hold_packages(INSTALLED, KERNEL_METAS, True)
    assert set(KERNEL_METAS) <= set(held)
    assert {"linux-modules-nvidia-580-server-generic", f"linux-modules-nvidia-580-server-{KERNEL}",
            "nvidia-utils-580-server", "nvidia-fabricmanager-580"} <= set(held)
    assert "nvidia-container-toolkit" not in held and "python3-pynvml" not in held


def test_without_hold_kernel_the_modules_metapackages_follow_the_kernel(drv: ModuleType) -> None:
    """The role's old behaviour, which strands a host once a new kernel needs a newer driver."""
    held = drv.hold_packages(INSTALLED, KERNEL_METAS, False)
    assert f"linux-modules-nvidia-580-server-{KERNEL}" in held and "nvidia-utils-580-server" in held
    assert not {"linux-modules-nvidia-580-server-generic", "linux-modules-nvidia-580-server-open-generic-hwe-24.04",
                *KERNEL_METAS} & set(held)


def test_plain_run_may_install_when_nothing_is_held(drv: ModuleType) -> None:
    assert drv.needs_upgrade_flag(["nvidia-utils-570-server"], INSTALLED, [], "") == []


def test_plain_run_must_not_change_held_packages(drv: ModuleType) -> None:
    held = drv.hold_packages(INSTALLED, KERNEL_METAS, True)
    assert drv.needs_upgrade_flag(["nvidia-utils-580-server", f"linux-modules-nvidia-580-server-{KERNEL}"],
                                  INSTALLED, held, "") == []
    assert drv.needs_upgrade_flag(["nvidia-utils-570-server"], INSTALLED, held, "") == [
        "nvidia-utils-570-server is not installed"]
    assert drv.needs_upgrade_flag(["nvidia-utils-580-server=580.126.09-*"], INSTALLED, held, "580.126.09") == [
        "nvidia-utils-580-server is 580.178.04, not 580.126.09"]
    assert drv.needs_upgrade_flag(["nvidia-utils-580-server=580.178.04-*"], INSTALLED, held, "580.178.04") == []


# --- pins -----------------------------------------------------------------------------------------------

OFFERED = [("580.178.04", ["noble-updates/restricted", "noble-security/restricted"])]


def test_a_pin_the_sources_do_not_offer_lists_what_they_do(drv: ModuleType) -> None:
    text = drv.pin_problem("580.126.09", "nvidia-utils-580-server", OFFERED)
    assert "580.126.09 is not offered by this host's apt sources for nvidia-utils-580-server" in text
    assert "580.178.04 (noble-updates/restricted, noble-security/restricted)" in text
    assert "keeps only the newest version per pocket" in text and "Fix:" in text


def test_a_pin_older_than_the_prebuilt_modules_need(drv: ModuleType) -> None:
    offered = [("580.178.04", ["jammy-updates/restricted"]), ("580.95.05", ["jammy-security/restricted"])]
    depends = "linux-image-6.8.0-149-generic, nvidia-kernel-common-580-server (>= 580.178.04)"
    text = drv.pin_problem("580.95.05", "nvidia-utils-580-server", offered,
                           "linux-modules-nvidia-580-server-6.8.0-149-generic", depends,
                           "nvidia-kernel-common-580-server")
    assert "built against driver 580.178.04 and need it or newer, but nvidia_driver_version is 580.95.05" in text
    assert drv.pin_problem("580.178.04", "nvidia-utils-580-server", offered, "x", depends,
                           "nvidia-kernel-common-580-server") == ""
    assert drv.pin_problem("", "nvidia-utils-580-server", []) == ""


def test_offered_versions_ignore_the_installed_only_entry(drv: ModuleType) -> None:
    entry = {"versions": [{"version": "580.178.04-0ubuntu0.24.04.1", "suites": ["noble-updates/restricted"]},
                          {"version": "580.95.05-0ubuntu0.24.04.3", "suites": []}]}
    assert drv.offered_versions(entry) == [("580.178.04", ["noble-updates/restricted"])]
    assert drv.offered_versions(None) == []


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


def test_reboot_into_the_kernel_installed_with_the_driver(drv: ModuleType) -> None:
    result = decide(drv, gpu("580.178.04"), running_kernel=KERNEL, boot_kernel="6.8.0-50-generic")
    assert result["action"] == "reboot"
    assert result["reasons"] == [
        f"the next boot starts kernel 6.8.0-50-generic, installed with the driver (running: {KERNEL})"]
    assert decide(drv, gpu("580.178.04"), running_kernel=KERNEL, boot_kernel=KERNEL)["action"] == "none"


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


def test_verify_carries_what_nvml_could_not_read(drv: ModuleType) -> None:
    nvml = {"available": True, "driver_version": "580.178.04", "devices": [{}],
            "notes": ["GPU 0 compute capability unknown: this NVML has no nvmlDeviceGetCudaComputeCapability"]}
    result = drv.verify(gpu("580.178.04", nvml), "580.178.04", False)
    assert result["ok"] and result["message"].endswith("(GPU 0 compute capability unknown: this NVML has no "
                                                       "nvmlDeviceGetCudaComputeCapability)")


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


def test_switching_flavour_names_the_packages_it_replaces(drv: ModuleType) -> None:
    installed = {"nvidia-headless-no-dkms-580-server-open": "1", "nvidia-kernel-source-580-server-open": "1",
                 f"linux-modules-nvidia-580-server-open-{KERNEL}": "1",
                 "linux-modules-nvidia-580-server-open-generic": "1",
                 "nvidia-utils-580-server": "1", "libnvidia-compute-580-server": "1",
                 "nvidia-kernel-common-580-server": "1", "nvidia-headless-no-dkms-570-server-open": "1"}
    assert drv.other_flavour_packages(installed, "ubuntu", "580", True, "proprietary") == [
        f"linux-modules-nvidia-580-server-open-{KERNEL}", "linux-modules-nvidia-580-server-open-generic",
        "nvidia-headless-no-dkms-580-server-open", "nvidia-kernel-source-580-server-open"]
    assert drv.other_flavour_packages(installed, "ubuntu", "580", True, "open") == []
    proprietary = {"nvidia-headless-580-server": "1", "nvidia-dkms-580-server": "1",
                   f"linux-modules-nvidia-580-server-{KERNEL}": "1", "nvidia-utils-580-server": "1"}
    assert drv.other_flavour_packages(proprietary, "ubuntu", "580", True, "open") == [
        f"linux-modules-nvidia-580-server-{KERNEL}", "nvidia-dkms-580-server", "nvidia-headless-580-server"]
