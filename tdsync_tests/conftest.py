"""Shared fixtures: a real MongoDB wire server, real source databases, an isolated environment."""

from __future__ import annotations

import ast
import contextlib
import os
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from pymongo import MongoClient

from tdsync.config.settings import Settings
from tdsync.store import CatalogueStore
from tdsync.store.client import shared_store
from tdsync_tests.test_api.live import isolated_env, settings_for

IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_KEY = Fernet.generate_key().decode()
PG_ADMIN_URL = os.environ.get(
    "TDSYNC_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN_URL = os.environ.get(
    "TDSYNC_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)


# What a test needs to be in the fast tier (`pytest -m fast`): no fixture that reaches a server (a
# MongoDB wire server, PostgreSQL, MariaDB, RabbitMQ, Dagster's PostgreSQL: those below, and its
# module's fixtures that make a server database themselves), no server database made by the test
# itself (`_server_database`, test_scan's `Sources`/`sources_of`), no parameter naming a server's
# dialect in a module that picks its source by that parameter (`request.getfixturevalue`, or
# test_scan's `sources_of`), and a module that starts no process nor server of its own.
SERVER_FIXTURES = {"mongo_uri", "pg_url", "mysql_url", "amqp_url", "dagster_pg"}
SERVER_DIALECTS = {"postgresql", "mariadb", "mysql"}
PICKS_SOURCES = ("getfixturevalue", "sources_of")
MAKES_SERVER_DATABASE = re.compile(
    r"_server_database\(|(sources_of|Sources)\([\"'](postgresql|mariadb)"
)
STARTS_SERVERS = ("subprocess", "SecantusDBServer", "start_embedded", "ApiProcess", "Popen")


def _server_functions(source: str) -> set[str]:
    """The module's own fixtures and tests that make a database on a server."""
    return {
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and MAKES_SERVER_DATABASE.search(ast.unparse(node))
    }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    modules: dict[Path, tuple[str, set[str]]] = {}
    for item in items:
        path = Path(str(item.fspath))
        if path not in modules:
            source = path.read_text()
            modules[path] = (source, SERVER_FIXTURES | _server_functions(source))
        source, server_functions = modules[path]
        callspec = getattr(item, "callspec", None)
        params = set(callspec.id.split("-")) if callspec else set()
        picks_a_server = not SERVER_DIALECTS.isdisjoint(params) and any(
            word in source for word in PICKS_SOURCES
        )
        if (
            server_functions.isdisjoint({*getattr(item, "fixturenames", ()), item.originalname})
            and not picks_a_server
            and not any(word in source for word in STARTS_SERVERS)
        ):
            item.add_marker(pytest.mark.fast)


def unavailable(reason: str) -> None:
    """Skip a test whose server is unreachable, except in CI where every test must run."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("TDSYNC_TEST_MONGO_URI")
    if external:
        yield secantus_tuned(external)
        return
    from secantus import SecantusDBServer

    server = SecantusDBServer(
        host="127.0.0.1", port=0, storage_path=str(tmp_path_factory.mktemp("secantus"))
    )
    server.start()
    try:
        yield server.uri.rstrip("/") + "/?retryWrites=false"
    finally:
        # Without the shutdown, stop() waits 2 s and leaves its accept thread behind.
        with contextlib.suppress(OSError):
            server._socket.shutdown(socket.SHUT_RDWR)
        server.stop()


def secantus_tuned(uri: str) -> str:
    """`uri`, with retryable writes off when it points at a SecantusDB server and does not say
    otherwise (they slow SecantusDB down, SECANTUSDB.md); a MongoDB keeps its defaults."""
    if "retrywrites=" in uri.lower():
        return uri
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        if "secantusVersion" not in client.admin.command("buildInfo"):
            return uri
    path = uri.split("://", 1)[1]
    base = uri if "/" in path else uri + "/"
    return base + ("&" if "?" in base else "?") + "retryWrites=false"


@pytest.fixture
def tdsync_env(mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An isolated tdsync environment: its own Mongo database, key, home and Dagster instance."""
    env = isolated_env(mongo_uri, tmp_path, key=TEST_KEY)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TDSYNC_API_KEY", raising=False)
    monkeypatch.delenv("TDSYNC_DEPLOYMENT", raising=False)  # local unless a test says otherwise
    yield env
    shared_store(settings_for(env)).client.drop_database(env["TDSYNC_MONGO_DB"])


@pytest.fixture
def settings(tdsync_env: dict[str, str]) -> Settings:
    """The test's Settings, built from its isolated environment (its temporary home, database
    and key): what tdsync's functions take, and what its runs and subprocesses read from the
    exported variables."""
    return settings_for(tdsync_env)


def until(
    condition: Callable[[], object], what: str, timeout_s: float = 60.0, poll_s: float = 0.05
) -> None:
    """Poll with a deadline, for work in another process or thread that cannot be awaited."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(poll_s)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose socket accepts TCP connections (kernel backlog) but never answers: a source
    that hangs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def source_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for tests that read source databases and no catalogue: tdsync's state in a
    temporary folder (a source there is refused), no store server needed."""
    root = tmp_path_factory.mktemp("tdsync-state")
    return Settings(home=root / "home", dagster_home=root / "dagster")


@pytest.fixture
def store(settings: Settings) -> CatalogueStore:
    return shared_store(settings)


@pytest.fixture
def fake_store():
    """An in-memory CatalogueStore (tdsync_tests/fakes.py): for the fast tier's routes, schedules
    and sensors."""
    from tdsync_tests.fakes import FakeStore

    return FakeStore()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    path = tmp_path / "source.db"
    sqlite3.connect(path).close()
    return path


def _server_database(admin_url: str, what: str) -> Iterator[str]:
    name = f"tdsync_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args=_quick(admin_url)
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        unavailable(f"{what} is unreachable: {str(exc.orig).splitlines()[0]}")
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if admin_url.startswith("postgresql"):
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def execute(url: str, *statements: str) -> None:
    """Run `statements` on the database at `url`, in one transaction."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def _quick(url: str) -> dict:
    return {"connect_timeout": 3}


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session."""
    yield from _server_database(PG_ADMIN_URL, "PostgreSQL at 127.0.0.1:5432")


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A throwaway MariaDB database for this test session."""
    yield from _server_database(MYSQL_ADMIN_URL, "MariaDB at 127.0.0.1:3306")
