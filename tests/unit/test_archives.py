"""harness.archives: the same refusals with tarfile's data filter and without it (Python < 3.11.4)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from harness import archives


def _tarball(path: Path, entries: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in entries:
            data = b"x" * info.size if info.isfile() else None
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.uname = 3, mode, 4242, "someone"
    return info


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.fixture(params=["data filter", "by hand"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "by hand":
        # As on Debian 12's Python 3.11.2, which has no extraction filters.
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile extraction filters")
    return str(request.param)


def test_files_folders_and_inner_links_are_extracted(tmp_path: Path, mode: str) -> None:
    tarball = _tarball(tmp_path / "a.tar.gz", [_file("top/a.txt", 0o4777), _link("top/b.txt", "a.txt")])
    with tarfile.open(tarball) as tar:
        archives.extract(tar, tmp_path / "out")
    out = tmp_path / "out" / "top"
    assert (out / "a.txt").read_bytes() == b"xxx" and (out / "b.txt").read_bytes() == b"xxx"
    assert (out / "a.txt").stat().st_mode & 0o7777 == 0o755  # no set-id bits, no group/other write


def test_chosen_members_only(tmp_path: Path, mode: str) -> None:
    tarball = _tarball(tmp_path / "a.tar.gz", [_file("top/a.txt"), _file("top/b.txt")])
    with tarfile.open(tarball) as tar:
        archives.extract(tar, tmp_path / "out", [m for m in tar.getmembers() if m.name.endswith("a.txt")])
    assert sorted(p.name for p in (tmp_path / "out" / "top").iterdir()) == ["a.txt"]


def test_an_absolute_name_lands_inside(tmp_path: Path, mode: str) -> None:
    tarball = _tarball(tmp_path / "a.tar.gz", [_file("/abs/inside.txt")])
    with tarfile.open(tarball) as tar:
        archives.extract(tar, tmp_path / "out")
    assert (tmp_path / "out" / "abs" / "inside.txt").read_bytes() == b"xxx"


@pytest.mark.parametrize("entry", [_file("../escape.txt"), _link("top/l", "/etc/passwd"),
                                   _link("top/l", "../../escape")], ids=["dotdot", "abs-link", "out-link"])
def test_what_would_land_outside_is_refused(tmp_path: Path, mode: str, entry: tarfile.TarInfo) -> None:
    tarball = _tarball(tmp_path / "a.tar.gz", [entry])
    with tarfile.open(tarball) as tar, pytest.raises(tarfile.TarError):
        archives.extract(tar, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "escape.txt").exists()
