"""Kernels, apt components per pocket and Debian package metadata, as the nvidia_driver role reads them."""

from __future__ import annotations

from types import ModuleType

import pytest

# --- Debian package metadata ------------------------------------------------------------------------

DPKG = "\n".join("\t".join(fields) for fields in [
    ("linux-image-generic", "6.8.0-45.45", "ii ", "install ok installed", "linux-meta",
     "linux-image-6.8.0-45-generic, linux-firmware", "", "", ""),
    ("linux-image-6.8.0-45-generic", "6.8.0-45.45", "ii ", "install ok installed", "linux-signed",
     "linux-modules-6.8.0-45-generic", "", "", ""),
    ("linux-generic", "6.8.0-45.45", "hi ", "hold ok installed", "linux-meta", "linux-image-generic (= 6.8.0-45.45)",
     "", "", ""),
    ("nvidia-utils-580-server", "580.178.04-1", "ii ", "install ok installed", "nvidia-graphics-drivers-580-server",
     "libnvidia-compute-580-server (>= 580.178.04), nvidia-kernel-common-580-server-580.178.04 | foo", "", "", ""),
    ("libnvidia-compute-580-server", "580.178.04-1", "ii ", "install ok installed", "", "libc6 (>= 2.34)", "", "", ""),
    ("nvidia-kernel-common-580-server", "580.178.04-1", "ii ", "install ok installed", "", "", "", "",
     "nvidia-kernel-common-580-server-580.178.04"),
    ("libc6", "2.39-0ubuntu8", "ii ", "install ok installed", "glibc", "", "libgcc-s1", "", ""),
    ("libgcc-s1", "14-1", "ii ", "install ok installed", "gcc-14", "", "", "", ""),
    ("old-driver", "1.0", "rc ", "deinstall ok config-files", "", "", "", "", ""),
    ("held-gone", "1.0", "hn ", "hold ok not-installed", "", "", "", "", ""),
    ("short line",),
])


def test_dpkg_query_rows(debs: ModuleType) -> None:
    packages = debs.parse_dpkg_query(DPKG)
    assert packages["linux-generic"]["held"] and packages["linux-generic"]["installed"]
    assert packages["held-gone"]["held"] and not packages["held-gone"]["installed"]
    assert not packages["old-driver"]["installed"]
    assert packages["libnvidia-compute-580-server"]["source"] == "libnvidia-compute-580-server"  # no source: itself
    assert packages["nvidia-utils-580-server"]["depends"] == [
        ["libnvidia-compute-580-server"], ["nvidia-kernel-common-580-server-580.178.04", "foo"]]
    assert packages["libc6"]["depends"] == [["libgcc-s1"]]  # Pre-Depends count
    assert "short line" not in packages


def test_dependency_closure_follows_virtual_packages(debs: ModuleType) -> None:
    packages = debs.parse_dpkg_query(DPKG)
    assert debs.dependency_closure(["nvidia-utils-580-server"], packages) == {
        "nvidia-utils-580-server", "libnvidia-compute-580-server", "nvidia-kernel-common-580-server", "libc6",
        "libgcc-s1"}
    assert debs.dependency_closure(["not-installed"], packages) == set()


def test_relations_and_bounds(debs: ModuleType) -> None:
    field = "a (>= 1.2), b:any | c (<< 3), nvidia-kernel-common-580-server (>= 580.178.04)"
    assert debs.relation_names(field) == [["a"], ["b", "c"], ["nvidia-kernel-common-580-server"]]
    assert debs.version_bound(field, "nvidia-kernel-common-580-server", ">=") == "580.178.04"
    assert debs.version_bound(field, "c", "<<") == "3"
    assert debs.version_bound(field, "a", "<<") is None
    assert debs.version_bound("xa (>= 9)", "a", ">=") is None


POLICY = """\
nvidia-utils-580-server:
  Installed: 580.95.05-0ubuntu0.24.04.3
  Candidate: 580.178.04-0ubuntu0.24.04.1
  Version table:
     580.178.04-0ubuntu0.24.04.1 500
        500 http://archive.ubuntu.com/ubuntu noble-updates/restricted amd64 Packages
        500 http://archive.ubuntu.com/ubuntu noble-security/restricted amd64 Packages
 *** 580.95.05-0ubuntu0.24.04.3 100
        100 /var/lib/dpkg/status
linux-modules-nvidia-580-server-sim:
  Installed: (none)
  Candidate: 6.8.0-101.1
  Version table:
     6.8.0-101.1 500
        500 file:/srv/simrepo ./ Packages
missing-package:
  Installed: (none)
  Candidate: (none)
  Version table:
"""


def test_apt_cache_policy(debs: ModuleType) -> None:
    policy = debs.parse_policy(POLICY)
    utils = policy["nvidia-utils-580-server"]
    assert utils["installed"] == "580.95.05-0ubuntu0.24.04.3" and utils["candidate"] == "580.178.04-0ubuntu0.24.04.1"
    assert utils["versions"] == [
        {"version": "580.178.04-0ubuntu0.24.04.1", "suites": ["noble-updates/restricted", "noble-security/restricted"]},
        {"version": "580.95.05-0ubuntu0.24.04.3", "suites": []}]
    assert policy["linux-modules-nvidia-580-server-sim"]["versions"][0]["suites"] == ["./"]
    assert policy["missing-package"] == {"installed": None, "candidate": None, "versions": []}


def test_apt_get_simulation(debs: ModuleType) -> None:
    text = ("NOTE: This is only a simulation!\nInst libnvidia-compute-580-server [580.95.05-1] (580.178.04-1 "
            "Ubuntu:24.04/noble-updates [amd64])\nInst nvidia-utils-580-server (580.178.04-1 "
            "Ubuntu:24.04/noble-updates [amd64])\nConf nvidia-utils-580-server (580.178.04-1 "
            "Ubuntu:24.04/noble-updates [amd64])\n")
    assert debs.parse_simulation(text) == [
        {"name": "libnvidia-compute-580-server", "replaces": "580.95.05-1", "version": "580.178.04-1"},
        {"name": "nvidia-utils-580-server", "replaces": "", "version": "580.178.04-1"}]


# --- apt components, per pocket -----------------------------------------------------------------------

OWN = "/etc/apt/sources.list.d/nvidia-driver-ubuntu.sources"
INDEXTARGETS = "\n".join([
    "http://archive.ubuntu.com/ubuntu\tnoble\tmain\t/etc/apt/sources.list:1",
    "http://archive.ubuntu.com/ubuntu\tnoble\tuniverse\t/etc/apt/sources.list:1",
    "http://archive.ubuntu.com/ubuntu\tnoble\trestricted\t/etc/apt/sources.list:1",
    "http://archive.ubuntu.com/ubuntu\tnoble-updates\tmain\t/etc/apt/sources.list:2",
    "http://archive.ubuntu.com/ubuntu\tnoble-updates\tmultiverse\t/etc/apt/sources.list:2",
    f"http://archive.ubuntu.com/ubuntu\tnoble-security\trestricted\t{OWN}:1",
    f"http://archive.ubuntu.com/ubuntu\tnoble-security\tmultiverse\t{OWN}:1",
    "https://download.docker.com/linux/ubuntu\tnoble\tstable\t/etc/apt/sources.list.d/docker.sources:1",
    "garbage line",
])


def test_components_are_checked_in_every_pocket(apt_sources: ModuleType) -> None:
    rows = apt_sources.parse_indextargets(INDEXTARGETS)
    assert len(rows) == 8
    missing, mirror = apt_sources.missing_components(rows, "noble", ["restricted", "multiverse"], OWN)
    # restricted in the release pocket only is not enough: 24.04's 580 packages are in -updates and -security.
    assert missing == {"noble": ["multiverse"], "noble-updates": ["restricted"],
                       "noble-security": ["restricted", "multiverse"]}
    assert mirror == "http://archive.ubuntu.com/ubuntu"
    assert apt_sources.source_stanzas(missing) == [
        {"suites": ["noble"], "components": ["multiverse"]},
        {"suites": ["noble-updates"], "components": ["restricted"]},
        {"suites": ["noble-security"], "components": ["restricted", "multiverse"]}]


def test_suites_lacking_the_same_components_share_a_stanza(apt_sources: ModuleType) -> None:
    missing, _ = apt_sources.missing_components([], "jammy", ["restricted", "multiverse"], OWN)
    assert apt_sources.source_stanzas(missing) == [
        {"suites": ["jammy", "jammy-updates", "jammy-security"], "components": ["restricted", "multiverse"]}]


def test_no_missing_components_on_a_stock_cloud_image(apt_sources: ModuleType) -> None:
    rows = [{"site": "http://azure.archive.ubuntu.com/ubuntu", "release": f"noble{pocket}", "component": c,
             "sourcesentry": "/etc/apt/sources.list.d/ubuntu.sources:1"}
            for pocket in ("", "-updates", "-security") for c in ("main", "restricted", "universe", "multiverse")]
    assert apt_sources.missing_components(rows, "noble", ["restricted", "multiverse"], OWN) == (
        {}, "http://azure.archive.ubuntu.com/ubuntu")


# --- kernels ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kernel", "flavour"), [
    ("6.8.0-45-generic", "generic"), ("5.15.0-1070-azure", "azure"), ("6.8.0-1015-aws", "aws"),
    ("6.8.0-45-lowlatency-64k", "lowlatency-64k"), ("6.18.44-fc-v669", None), ("6.1.0-26-amd64", "amd64"),
])
def test_kernel_flavour(kernels: ModuleType, kernel: str, flavour: str | None) -> None:
    assert kernels.kernel_flavour(kernel) == flavour


def package(depends: str = "", source: str = "linux-meta", installed: bool = True) -> dict:
    return {"version": "1", "installed": installed, "held": False, "source": source, "recommends": [],
            "provides": [], "depends": [[name.strip().split()[0]] for name in depends.split(",") if name.strip()]}


def test_image_metapackage_of_a_host_that_has_not_rebooted(kernels: ModuleType) -> None:
    """The metapackage moved on to -50; the host still runs -45 of the same stream: still found."""
    packages = {"linux-image-generic-hwe-22.04": package("linux-image-6.8.0-50-generic"),
                "linux-image-generic": package("linux-image-5.15.0-204-generic")}
    assert kernels.image_metapackages(packages, "6.8.0-45-generic") == ["generic-hwe-22.04"]
    assert kernels.image_metapackages(packages, "6.18.44-custom") == []


def test_exact_match_wins_over_the_stream(kernels: ModuleType) -> None:
    packages = {"linux-image-virtual": package("linux-image-6.8.0-45-generic"),
                "linux-image-generic-6.8": package("linux-image-6.8.0-44-generic"),
                "linux-image-extra-virtual": package("linux-image-generic"),
                "linux-image-aws": package("linux-image-6.8.0-45-generic", source="linux-meta-aws", installed=False)}
    assert kernels.image_metapackages(packages, "6.8.0-45-generic") == ["virtual"]
    assert kernels.modules_meta_candidates(["virtual-hwe-22.04", "generic"]) == [
        "generic-hwe-22.04", "virtual-hwe-22.04", "generic"]


def test_kernel_metapackages_are_those_built_by_linux_meta(kernels: ModuleType) -> None:
    packages = {"linux-generic": package(), "linux-headers-generic": package(),
                "linux-image-6.8.0-45-generic": package(source="linux-signed"),
                "linux-firmware": package(source="linux-firmware"), "linux-base": package(source="linux-base"),
                "linux-image-virtual": package(installed=False)}
    assert kernels.kernel_metapackages(packages) == ["linux-generic", "linux-headers-generic"]


def test_next_boot_kernel_and_its_module(kernels: ModuleType) -> None:
    packages = {f"linux-image-{k}": package(source="linux-signed") for k in
                ("6.8.0-99-generic", "6.8.0-100-generic", "6.8.0-9-generic")}
    packages["linux-image-unsigned-6.8.0-101-lowlatency"] = package(source="linux-lowlatency")
    installed = kernels.installed_kernels(packages)
    assert installed == ["6.8.0-101-lowlatency", "6.8.0-100-generic", "6.8.0-99-generic", "6.8.0-9-generic"]
    problem = kernels.boot_problem(installed, {"6.8.0-100-generic"}, "6.8.0-100-generic")
    assert problem.startswith("the next boot starts kernel 6.8.0-101-lowlatency (the newest installed; running now: "
                              "6.8.0-100-generic), which has no nvidia module (kernels with one: 6.8.0-100-generic)")
    assert kernels.boot_problem(installed, {"6.8.0-101-lowlatency"}, "x") == ""
    assert kernels.boot_problem([], set(), "x") == ""
