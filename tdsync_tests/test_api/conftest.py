"""Fixtures for the API tests: a real `tdsync api` process over the test MongoDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tdsync.store import CatalogueStore
from tdsync.store.client import open_store
from tdsync_tests.test_api.live import ApiProcess, isolated_env, settings_for


@pytest.fixture(scope="package")
def api_env(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = isolated_env(mongo_uri, tmp_path_factory.mktemp("api"))
    yield env
    store = open_store(settings_for(env))
    store.client.drop_database(env["TDSYNC_MONGO_DB"])


@pytest.fixture(scope="package")
def live_api(
    api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """One `tdsync api` process shared by the live tests (each test uses its own connections)."""
    server = ApiProcess(api_env, tmp_path_factory.mktemp("api-log") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def api(live_api: ApiProcess) -> Iterator[httpx.Client]:
    with live_api.client() as client:
        yield client


@pytest.fixture(scope="package")
def api_store(api_env: dict[str, str]) -> CatalogueStore:
    """The live server's catalogue, read directly (to check what the API wrote)."""
    return open_store(settings_for(api_env))


@pytest.fixture
def make_sqlite(tmp_path: Path):
    """make_sqlite(*ddl) -> a SQLite file holding those tables and views."""
    import sqlite3

    made = []

    def make(*statements: str, name: str | None = None) -> Path:
        path = tmp_path / (name or f"source_{len(made)}.db")
        with sqlite3.connect(path) as conn:
            for statement in statements:
                conn.execute(statement)
        made.append(path)
        return path

    yield make
    for path in made:
        path.unlink(missing_ok=True)
