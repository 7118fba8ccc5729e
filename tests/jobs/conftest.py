"""The job-store suite runs against both backends: every test taking ``db`` runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.jobs import Database, JobStore, open_database
from harness.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a fresh job store is: a SQLite path, or the URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "jobs.sqlite3"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
def connect(target: str | Path) -> Iterator[Callable[[], Database]]:
    """``connect()``: another connection to the test's job store (as another process would have)."""
    made: list[Database] = []

    def make() -> Database:
        made.append(open_database(target))
        return made[-1]

    yield make
    for db in made:
        db.close()


@pytest.fixture
def store(target: str | Path) -> Iterator[JobStore]:
    """The job store, migrated."""
    with JobStore(target) as opened:
        yield opened
