"""Fixtures of the dashboard's route tests: a job store with jobs and results, and a test client."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from dashkit import USERS, dashboard_config  # noqa: E402

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


def log_in(client: TestClient, user: str) -> TestClient:
    """Log ``user`` in through the login form; the client keeps the session cookie."""
    page = client.get("/login")
    token = page.text.split('name="login_token" value="', 1)[1].split('"', 1)[0]
    done = client.post("/login", data={"user": user, "password": USERS[user][0], "login_token": token, "next": "/"},
                       follow_redirects=False)
    assert done.status_code == 303, done.text
    return client


def csrf(client: TestClient, path: str = "/") -> str:
    """The session's CSRF token, as a page carries it."""
    page = client.get(path)
    return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


@pytest.fixture
def as_user(client: TestClient) -> Callable[[str], TestClient]:
    return lambda user: log_in(client, user)
