"""package_record: uninstall removes what an install added, never what the host had or got meanwhile."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.conftest import REPO, load


@pytest.fixture(scope="module")
def record(debs: ModuleType) -> ModuleType:
    return load(REPO / "plugins/modules/package_record.py", "package_record")


def row(name: str, depends: str = "", provides: str = "", status: str = "ii ") -> str:
    return "\t".join([name, "1.0", status, "install ok installed", name, depends, "", "", provides])


BEFORE = ["libc6", "bc", "nvidia-utils-580-server", "libnvidia-compute-580-server"]
AFTER = "\n".join([
    row("libc6"),
    row("bc", "libc6"),  # an orphan the host had: autoremove would take it, the record does not
    row("nvidia-utils-580-server", "libnvidia-compute-580-server"),  # the host's own driver before the role
    row("libnvidia-compute-580-server", "libc6"),
    row("nvidia-headless-no-dkms-580-server-open",
        "nvidia-utils-580-server, nvidia-kernel-common-580-server-580.178.04, nvidia-kernel-source-580-server-open"),
    row("nvidia-kernel-common-580-server", "nvidia-firmware-580-server-580.178.04",
        provides="nvidia-kernel-common-580-server-580.178.04"),
    row("nvidia-firmware-580-server-580.178.04"),
    row("nvidia-kernel-source-580-server-open"),
    row("linux-modules-nvidia-580-server-open-6.8.0-50-generic", "linux-image-6.8.0-50-generic"),
    row("linux-image-6.8.0-50-generic"),  # a kernel pulled in: the host may boot it, never claimed
    row("linux-image-6.8.0-51-generic"),  # installed meanwhile by unattended-upgrades: not requested
    row("unattended-extra"),
])


def test_claims_only_what_the_install_added(record: ModuleType, debs: ModuleType) -> None:
    packages = debs.parse_dpkg_query(AFTER)
    added = record.claimed(packages, BEFORE, ["nvidia-headless-no-dkms-580-server-open=580.178.04-*",
                                              "linux-modules-nvidia-580-server-open-6.8.0-50-generic"],
                           [r"^linux-(image|image-unsigned|modules|modules-extra)-\d"])
    assert added == ["linux-modules-nvidia-580-server-open-6.8.0-50-generic", "nvidia-firmware-580-server-580.178.04",
                     "nvidia-headless-no-dkms-580-server-open", "nvidia-kernel-common-580-server",
                     "nvidia-kernel-source-580-server-open"]


def test_record_file_round_trip(record: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "records" / "role.json"
    assert record.read_record(str(path)) == {"packages": [], "holds": []}
    assert record.write_record(str(path), {"packages": ["b", "a"], "holds": []}, dry_run=True)
    assert not path.exists()
    assert record.write_record(str(path), {"holds": [], "packages": ["a", "b"]})
    assert not record.write_record(str(path), {"holds": [], "packages": ["a", "b"]})  # unchanged: no write
    assert record.read_record(str(path)) == {"packages": ["a", "b"], "holds": []}
    assert path.stat().st_mode & 0o777 == 0o644


def test_reads_the_appliance_roles_plain_list(record: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "added-packages.json"
    path.write_text(json.dumps(["libpython3.12"]))
    assert record.read_record(str(path)) == {"packages": ["libpython3.12"], "holds": []}
    path.write_text("{broken")
    with pytest.raises(ValueError, match="cannot read the package record"):
        record.read_record(str(path))


def test_removing_the_last_record_removes_its_folder(record: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "appliance-host"
    folder.mkdir()
    (folder / "nvidia_driver.json").write_text("{}")
    (folder / "kubernetes.json").write_text("{}")
    assert record.remove_record(str(folder / "nvidia_driver.json"), dry_run=True)
    assert (folder / "nvidia_driver.json").exists()
    assert record.remove_record(str(folder / "nvidia_driver.json"))
    assert folder.is_dir()  # another role's record is left
    assert record.remove_record(str(folder / "kubernetes.json"), dry_run=True)
    assert record.remove_record(str(folder / "kubernetes.json"))
    assert not folder.exists()
    assert not record.remove_record(str(folder / "kubernetes.json"))  # nothing left: no change
