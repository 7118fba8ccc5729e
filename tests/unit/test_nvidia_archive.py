"""The nvidia_driver role's choices against the real Ubuntu archive (recorded excerpts, fixtures/ubuntu_archive).

Every package the role would ask apt for exists in the release it is for, per module kind and kernel
flavour; the 580 packages live where the component check looks; a newer kernel's prebuilt modules need a
newer driver (why the kernel is held with the driver); and why NVML is not read through python3-pynvml.
"""

from __future__ import annotations

import re
from types import ModuleType

import pytest

from tests.unit.ubuntu_archive import RELEASES, Archive


@pytest.fixture(scope="module", params=sorted(RELEASES.values()))
def archive(request: pytest.FixtureRequest, debs: ModuleType) -> Archive:
    return Archive(request.param, debs)


def current_kernel(archive: Archive, flavour: str = "generic") -> str:
    """The kernel release the archive's modules metapackage for *flavour* points at (the newest built)."""
    meta = archive.candidate(f"linux-modules-nvidia-580-server-{flavour}")
    assert meta, f"{archive.codename} has no linux-modules-nvidia-580-server-{flavour}"
    match = re.search(rf"linux-modules-nvidia-580-server-(\S+-{flavour})\b", meta["Depends"])
    assert match
    return match.group(1)


def test_the_580_packages_are_in_the_pockets_the_component_check_covers(archive: Archive) -> None:
    for name in ("nvidia-headless-no-dkms-580-server-open", "nvidia-utils-580-server", "nvidia-fabricmanager-580"):
        entry = archive.policy(name)
        assert entry
        suites = {suite.split("/")[0] for version in entry["versions"] for suite in version["suites"]}
        assert {f"{archive.codename}-updates", f"{archive.codename}-security"} <= suites
    # 22.04 and 24.04 have no 580 package in the release pocket: a check of that pocket alone finds nothing.
    release_pocket = [s["Package"] for s in archive.suites.get(archive.codename, []) if "580" in s["Package"]]
    if archive.codename in ("jammy", "noble"):
        assert release_pocket == []
    else:
        assert "nvidia-utils-580-server" in release_pocket


@pytest.mark.parametrize("flavour", ["open", "proprietary"])
@pytest.mark.parametrize("method", ["prebuilt", "dkms", "none"])
@pytest.mark.parametrize("fabricmanager", [False, True])
def test_every_selected_package_exists(archive: Archive, drv: ModuleType, flavour: str, method: str,
                                       fabricmanager: bool) -> None:
    kernel = current_kernel(archive)
    specs = drv.select_packages("ubuntu", "580", True, flavour, method, kernel, "generic", "", fabricmanager,
                                "generic")
    for name in specs:
        if name.startswith("linux-headers-"):
            continue  # main, not recorded: Ubuntu publishes headers with every kernel
        assert archive.candidate(name), f"{archive.codename}: {name} is not in the archive"


def test_fabricmanager_matches_the_server_driver(archive: Archive) -> None:
    driver = archive.candidate("nvidia-headless-no-dkms-580-server")
    fabric = archive.candidate("nvidia-fabricmanager-580")
    assert driver and fabric and driver["Version"] == fabric["Version"]
    # Its dependency names the exact server driver version, which is why it is pinned with the driver.
    assert f"nvidia-kernel-common-580-server-{driver['Version'].split('-')[0]}" in fabric["Depends"]


def test_every_image_metapackage_finds_its_modules_metapackage(archive: Archive, debs: ModuleType,
                                                               kernels: ModuleType) -> None:
    """generic, virtual (which runs the generic kernel), -hwe-, -lts-, version-locked and edge streams, aws."""
    checked = []
    for meta in archive.kernel_metas:
        depends = debs.relation_names(meta.get("Depends", ""))
        image = next((g[0] for g in depends if re.fullmatch(r"linux-image-\d+\.\d+\.\d+-\d+-[a-z0-9-]+", g[0])), None)
        if image is None:
            continue  # a transitional or extra-virtual metapackage: depends on another metapackage
        kernel = image.removeprefix("linux-image-")
        installed = archive.installed_metas(debs, meta["Package"])
        flavours = kernels.image_metapackages(installed, kernel)
        assert flavours == [meta["Package"].removeprefix("linux-image-")]
        candidates = kernels.modules_meta_candidates(flavours)
        found = [c for c in candidates if archive.candidate(f"linux-modules-nvidia-580-server-open-{c}")]
        if kernel.endswith("-generic") and not archive.candidate(f"linux-modules-nvidia-580-server-{kernel}"):
            # A stream Ubuntu no longer builds NVIDIA modules for (noble's 6.11 HWE kernel): no prebuilt
            # module and no metapackage; the role falls back to DKMS and says so.
            assert not found
            continue
        assert found, f"{archive.codename}: no NVIDIA modules metapackage for {meta['Package']} (tried {candidates})"
        checked.append((meta["Package"], found[0]))
    names = dict(checked)
    assert names["linux-image-virtual"] == "generic"
    assert names["linux-image-generic"] == "generic"
    assert any(k.startswith("linux-image-virtual-hwe-") and v.startswith("generic-hwe-") for k, v in names.items())
    if archive.codename == "jammy":
        assert names["linux-image-aws-lts-22.04"] == "aws-lts-22.04"


def test_a_newer_kernel_needs_a_newer_driver(archive: Archive, drv: ModuleType) -> None:
    """Each kernel's prebuilt modules need the driver they were built against, or newer (on 22.04 the HWE
    kernels 6.8.0-134 and -138 need 580.173.02 and 580.178.04): a held driver and a new kernel do not go
    together, and apt keeps the modules back while it installs the kernel. Hence the kernel is held too."""
    needed: dict[tuple[str, int], tuple[int, ...]] = {}
    for stanza in archive.suites.get(f"{archive.codename}-updates", []):
        match = re.fullmatch(r"linux-modules-nvidia-580-server-(\d+\.\d+\.\d+)-(\d+)-generic", stanza["Package"])
        bound = re.search(r"nvidia-kernel-common-580-server \(>= ([^)]+)\)", stanza.get("Depends", ""))
        if match and bound:
            needed[(match.group(1), int(match.group(2)))] = tuple(int(p) for p in bound.group(1).split("."))
    newest_stream = max(needed)[0]
    stream = [needed[key] for key in sorted(needed) if key[0] == newest_stream]
    assert stream == sorted(stream) and len(set(stream)) > 1, stream
    # The role refuses a pin older than what the newest kernel's modules were built against.
    newest = max(needed)
    required, oldest = ".".join(map(str, needed[newest])), ".".join(f"{p:02d}" for p in stream[0])
    text = drv.pin_problem(oldest, "nvidia-headless-no-dkms-580-server", [(oldest, ["x"])],
                           f"linux-modules-nvidia-580-server-{newest[0]}-{newest[1]}-generic",
                           f"nvidia-kernel-common-580-server (>= {required})", "nvidia-kernel-common-580-server")
    assert "need it or newer" in text


def test_jammys_pynvml_has_no_compute_capability_call(debs: ModuleType) -> None:
    """Why NVML is called through ctypes: Ubuntu 22.04's binding (7.352.0, NVML 352) predates
    nvmlDeviceGetCudaComputeCapability, and raised AttributeError on every 22.04 GPU host."""
    jammy = Archive("jammy", debs)
    assert jammy.candidate("python3-pynvml")["Version"].startswith("7.352.")  # type: ignore[index]
