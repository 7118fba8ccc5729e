"""purge_dir: a purge deletes what a role added to a folder, never what was there before, never a
mount point, never across into another filesystem; the real module, run on this machine."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.modulekit import run_module


def _fill(folder: Path, outside: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "before.txt").write_text("the operator's\n")
    (folder / "images" / "blobs").mkdir(parents=True)
    (folder / "images" / "blobs" / "sha256").write_bytes(b"x" * 100)
    (folder / "link").symlink_to(outside)


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside"
    target.mkdir()
    (target / "precious").write_text("must survive\n")
    return target


def test_keeps_the_entries_that_were_there_before(tmp_path: Path, outside: Path) -> None:
    store = tmp_path / "store"
    _fill(store, outside)
    result = run_module("purge_dir", {"path": str(store), "keep": ["before.txt"], "remove": True})
    assert result["changed"] and result["deleted"] == ["images", "link"] and result["kept"] == ["before.txt"]
    # The folder still holds what was there before, so it stays; the link was removed, not followed.
    assert sorted(os.listdir(store)) == ["before.txt"] and not result["removed"]
    assert (outside / "precious").read_text() == "must survive\n"


def test_removes_a_folder_the_role_created(tmp_path: Path, outside: Path) -> None:
    store = tmp_path / "store"
    _fill(store, outside)
    assert run_module("purge_dir", {"path": str(store), "remove": True})["removed"]
    assert not store.exists()
    again = run_module("purge_dir", {"path": str(store), "remove": True})
    assert not again["changed"] and not again.get("failed")


def test_check_mode_changes_nothing(tmp_path: Path, outside: Path) -> None:
    store = tmp_path / "store"
    _fill(store, outside)
    result = run_module("purge_dir", {"path": str(store), "remove": True}, check=True)
    assert result["changed"] and result["deleted"] == ["before.txt", "images", "link"] and result["removed"]
    assert sorted(os.listdir(store)) == ["before.txt", "images", "link"]


def test_refuses_the_root_and_a_file(tmp_path: Path) -> None:
    assert run_module("purge_dir", {"path": "/"}).get("failed")
    (tmp_path / "file").write_text("x")
    assert run_module("purge_dir", {"path": str(tmp_path / "file")}).get("failed")


@pytest.fixture()
def mount(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs mounted at a fresh folder (skips where this machine cannot mount)."""
    point = tmp_path / "disk"
    point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "--lazy", str(point)], check=False)


def test_a_mount_point_is_emptied_never_removed(mount: Path, outside: Path) -> None:
    _fill(mount, outside)
    result = run_module("purge_dir", {"path": str(mount), "remove": True})
    assert result["mount_point"] and not result["removed"]
    assert mount.is_dir() and os.path.ismount(mount) and os.listdir(mount) == []


def test_nothing_is_deleted_across_a_nested_mount(tmp_path: Path, mount: Path, outside: Path) -> None:
    # The store holds a mount (a data disk mounted inside it): the module fails before deleting anything.
    store = mount.parent
    (store / "images").mkdir()
    (mount / "on-the-disk").write_text("keep\n")
    result = run_module("purge_dir", {"path": str(store), "remove": True})
    assert result.get("failed") and str(mount) in result["msg"], result
    assert (mount / "on-the-disk").read_text() == "keep\n" and (store / "images").is_dir()
