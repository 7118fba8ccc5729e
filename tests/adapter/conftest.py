"""Fixtures for the adapter tests: adapters started as real subprocesses, a generated CT series."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers are plain modules next to this file (not a package: tests/ has none).
sys.path.insert(0, str(Path(__file__).parent))
from adapterkit import Adapter, base_config, free_port  # noqa: E402
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


