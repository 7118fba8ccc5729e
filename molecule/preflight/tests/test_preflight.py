"""Verify on the converged host that preflight's saved facts match what the host really has."""

from __future__ import annotations

import json

FACTS = "/etc/ansible/facts.d/preflight.fact"


def _nvidia_gpus_on_pci(host) -> int:  # type: ignore[no-untyped-def]
    # Read the same sysfs the module reads, independently, with a shell one-liner.
    cmd = (
        "for d in /sys/bus/pci/devices/*; do [ -r $d/vendor ] || continue; "
        'v=$(cat $d/vendor); c=$(cut -c1-6 $d/class); '
        '[ "$v" = 0x10de ] && { [ "$c" = 0x0300 ] || [ "$c" = 0x0302 ]; } && echo $d; done; true'
    )
    return len([line for line in host.check_output(cmd).splitlines() if line.strip()])


def test_facts_file_is_root_owned_json(host) -> None:  # type: ignore[no-untyped-def]
    facts = host.file(FACTS)
    assert facts.exists and facts.user == "root" and facts.mode == 0o644
    json.loads(facts.content_string)


def test_release_matches_os_release(host) -> None:  # type: ignore[no-untyped-def]
    facts = json.loads(host.file(FACTS).content_string)
    version_id = host.check_output(". /etc/os-release && echo $VERSION_ID")
    assert facts["release"] == version_id
    assert version_id in ("22.04", "24.04", "26.04")


def test_gpu_count_matches_pci_bus(host) -> None:  # type: ignore[no-untyped-def]
    facts = json.loads(host.file(FACTS).content_string)
    assert int(facts["gpu_count"]) == _nvidia_gpus_on_pci(host)


def test_no_gpu_is_reported_plainly(host) -> None:  # type: ignore[no-untyped-def]
    facts = json.loads(host.file(FACTS).content_string)
    if _nvidia_gpus_on_pci(host) == 0:
        assert facts["nvml"]["available"] is False
        assert facts["nvml"]["reason"] == "no NVIDIA GPU on the PCI bus"


def test_secure_boot_state_matches_firmware(host) -> None:  # type: ignore[no-untyped-def]
    facts = json.loads(host.file(FACTS).content_string)
    if not host.file("/sys/firmware/efi").exists:
        assert facts["secure_boot"] == "unknown"
    else:
        assert facts["secure_boot"] in ("enabled", "disabled", "unknown")


def test_side_effect_left_no_mount(host) -> None:  # type: ignore[no-untyped-def]
    assert not host.mount_point("/mnt/preflight-tiny").exists
    assert not host.file("/var/tmp/preflight-tiny.img").exists


def test_nvswitches_are_reported(host) -> None:  # type: ignore[no-untyped-def]
    facts = json.loads(host.file(FACTS).content_string)
    switches = host.check_output(
        "for d in /sys/bus/pci/devices/*; do [ -r $d/vendor ] || continue; "
        '[ "$(cat $d/vendor)" = 0x10de ] && [ "$(cut -c1-6 $d/class)" = 0x0680 ] && echo $d; done; true')
    assert len(facts["nvswitch_devices"]) == len([line for line in switches.splitlines() if line.strip()])


def test_nothing_is_installed_for_nvml(host) -> None:  # type: ignore[no-untyped-def]
    """NVML is read through the driver's own library: no Python binding (Ubuntu 22.04's is too old)."""
    assert not host.package("python3-pynvml").is_installed
