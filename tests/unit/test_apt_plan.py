"""apt_plan: the packages an install adds are what apt plans for that request, nothing else.

Roles record this plan before they install, so uninstall purges exactly those packages; a package
that appears on the host during the run for another reason (unattended-upgrades) is never claimed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.modulekit import run_module

# apt-get install --simulate --no-install-recommends docker.io containerd, on a noble test host.
NOBLE = """\
NOTE: This is only a simulation!
The following NEW packages will be installed:
  containerd docker.io libjansson4 libnftables1 runc
0 upgraded, 5 newly installed, 0 to remove and 125 not upgraded.
Inst libjansson4 (2.14-2build2 Ubuntu:24.04/noble [amd64])
Inst libnftables1 (1.0.9-1ubuntu0.1 Ubuntu:24.04/noble-updates [amd64])
Inst runc (1.3.4-0ubuntu1~24.04.1 Ubuntu:24.04/noble-updates [amd64])
Inst containerd (2.2.1-0ubuntu1~24.04.4 Ubuntu:24.04/noble-updates [amd64])
Inst docker.io (29.1.3-0ubuntu3~24.04.2 Ubuntu:24.04/noble-updates, Ubuntu:24.04/noble-security [amd64])
Conf libjansson4 (2.14-2build2 Ubuntu:24.04/noble [amd64])
Conf docker.io (29.1.3-0ubuntu3~24.04.2 Ubuntu:24.04/noble-updates, Ubuntu:24.04/noble-security [amd64])
"""


def test_plan_lists_the_new_packages(apt_plan: ModuleType) -> None:
    assert apt_plan.parse_simulation(NOBLE) == {
        "new": ["containerd", "docker.io", "libjansson4", "libnftables1", "runc"], "upgraded": [], "removed": []}


def test_upgrades_and_removals_are_not_new(apt_plan: ModuleType) -> None:
    # Docker CE over Ubuntu's engine: apt removes the conflicting packages and upgrades a library.
    text = ("Remv docker.io [29.1.3-0ubuntu3~24.04.2]\nRemv containerd [2.2.1-0ubuntu1~24.04.4]\n"
            "Inst libseccomp2 [2.5.5-1ubuntu3] (2.5.5-1ubuntu3.1 Ubuntu:24.04/noble-updates [amd64])\n"
            "Inst docker-ce (5:28.0.1-1~ubuntu.24.04~noble Docker CE:noble [amd64])\n"
            "Inst libfoo:i386 (1.0 Ubuntu:24.04/noble [i386])\n")
    assert apt_plan.parse_simulation(text) == {
        "new": ["docker-ce", "libfoo:i386"], "upgraded": ["libseccomp2"], "removed": ["containerd", "docker.io"]}


def _deb(tmp_path: Path, name: str, depends: str) -> Path:
    root = tmp_path / name
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: tests <tests@example.org>\n"
        f"Depends: {depends}\nDescription: a test package\n")
    deb = tmp_path / f"{name}.deb"
    subprocess.run(["dpkg-deb", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


@pytest.mark.skipif(not (shutil.which("apt-get") and shutil.which("dpkg-deb")), reason="needs apt-get and dpkg-deb")
def test_real_apt_plans_only_what_is_missing(tmp_path: Path) -> None:
    # A local package depending on dpkg (always installed): apt plans the package alone.
    deb = _deb(tmp_path, "appliance-test-plan", "dpkg")
    result = run_module("apt_plan", {"name": [str(deb)]})
    assert not result.get("failed"), result
    assert result["new"] == ["appliance-test-plan"] and not result["changed"]
    # Nothing is installed by asking.
    assert subprocess.run(["dpkg", "-s", "appliance-test-plan"], capture_output=True).returncode != 0


@pytest.mark.skipif(not shutil.which("apt-get"), reason="needs apt-get")
def test_unknown_package_fails_with_apts_reason() -> None:
    result = run_module("apt_plan", {"name": ["appliance-test-no-such-package"]})
    assert result.get("failed") and "appliance-test-no-such-package" in result["msg"], result
