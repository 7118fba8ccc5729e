"""Fixtures of the dashboard's route tests: a job store with jobs and results, and a test client."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from dashkit import dashboard_config, log_in  # noqa: E402

from appliance.dashboard.app import create_app  # noqa: E402
from appliance.phantom import PhantomFiles, PhantomSpec, write_phantom  # noqa: E402
from appliance.settings import AdapterConfig, parse_config  # noqa: E402


@pytest.fixture(scope="session")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomFiles:
    """The default 128 x 128 x 40 phantom study."""
    return write_phantom(tmp_path_factory.mktemp("phantom"), PhantomSpec())


@pytest.fixture
def config(tmp_path: Path) -> AdapterConfig:
    return parse_config(dashboard_config(tmp_path / "storage"))


@pytest.fixture
def client(config: AdapterConfig) -> Iterator[TestClient]:
    """A test client of the dashboard for ``config`` (not logged in); base URL http://testserver."""
    with TestClient(create_app(config, feed_poll_seconds=0.05)) as c:
        yield c


@pytest.fixture
def as_user(client: TestClient) -> Callable[[str], TestClient]:
    return lambda user: log_in(client, user)
