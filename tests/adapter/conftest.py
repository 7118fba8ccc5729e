"""Fixtures for the adapter tests: adapters started as real subprocesses, a generated CT series."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers are plain modules next to this file (not a package: tests/ has none).
sys.path.insert(0, str(Path(__file__).parent))
from adapterkit import Adapter, Exporter, base_config, free_port  # noqa: E402
from ctseries import Series, write_series  # noqa: E402


@pytest.fixture
def adapter_factory(tmp_path: Path) -> Iterator[Callable[..., Adapter]]:
    """Make (not start) adapters; every one is killed at teardown."""
    made: list[Adapter] = []

    def make(config: dict[str, Any] | None = None, **overrides: Any) -> Adapter:
        folder = tmp_path / f"adapter{len(made)}"
        folder.mkdir()
        cfg = config or base_config(folder, free_port(), **overrides)
        a = Adapter(folder, cfg)
        made.append(a)
        return a

    yield make
    for a in made:
        a.kill()


@pytest.fixture
def adapter(adapter_factory: Callable[..., Adapter]) -> Adapter:
    """A running adapter with the default test configuration."""
    return adapter_factory().start()


@pytest.fixture(scope="session")
def series(tmp_path_factory: pytest.TempPathFactory) -> Series:
    """A 12-slice 512x512 CT series (written once per session)."""
    return write_series(tmp_path_factory.mktemp("ct") / "s1", 12)


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB ext4 filesystem on a loop device, mounted at a temporary folder."""
    if os.geteuid() != 0:
        pytest.skip("needs root to attach a loop device")
    for tool in ("losetup", "mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not available")
    image, mountpoint = tmp_path / "disk.img", tmp_path / "mnt"
    mountpoint.mkdir()
    with image.open("wb") as f:
        f.truncate(24 << 20)
    attach = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True, timeout=30)
    if attach.returncode != 0:
        pytest.skip(f"losetup failed: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", device], check=True, capture_output=True, timeout=60)
        subprocess.run(["mount", device, str(mountpoint)], check=True, capture_output=True, timeout=30)
        try:
            yield mountpoint
        finally:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot make a loop filesystem: {exc.stderr!r}")
    finally:
        subprocess.run(["losetup", "-d", device], capture_output=True, timeout=30)


@pytest.fixture
def with_exporter() -> Iterator[Callable[[Adapter], Adapter]]:
    """Start an exporter on an adapter's configuration (killed at teardown); return the adapter."""
    made: list[Exporter] = []

    def start(adapter: Adapter) -> Adapter:
        made.append(Exporter(adapter.tmp, adapter.config).start())
        return adapter

    yield start
    for exporter in made:
        exporter.kill()
