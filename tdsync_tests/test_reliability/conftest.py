"""Tools of the fault and abuse suite: a killable store server, a source connection killer, a
role with a recognisable password, and a `tdsync api` process of the suite's own."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tdsync.store import CatalogueStore
from tdsync.store.client import open_store
from tdsync.store.embedded import answers, local_uri, server_command
from tdsync_tests.conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, _server_database, until
from tdsync_tests.test_api.live import ApiProcess, free_port, isolated_env, settings_for

CANARY = "pw-CANARY-7f3a"  # the password every secrets test looks for
START_TIMEOUT_S = 60.0


# -- the store's server as a process of its own, to kill -9 and restart -------------------------


class StoreProcess:
    """SecantusDB as tdsync's embedded mode runs it (`python -m secantus --standalone`), on a
    folder and port of its own, so a test can SIGKILL it and restart it on the same data."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.uri = local_uri(self.port)
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> StoreProcess:
        with open(self.folder / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                server_command(self.folder, self.port),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        until(self.answers, "the store's server answers", START_TIMEOUT_S)
        return self

    def answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"SecantusDB exited: {(self.folder / 'server.log').read_text()}")
        return answers(self.uri, timeout_ms=300)

    def kill(self) -> None:
        """kill -9, and wait until the port is closed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def store_process(tmp_path: Path) -> Iterator[StoreProcess]:
    server = StoreProcess(tmp_path / "secantus").start()
    yield server
    server.stop()


@pytest.fixture
def own_store_env(
    store_process: StoreProcess, tdsync_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """tdsync_env, but on the killable store (the session's in-process one must stay up)."""
    monkeypatch.setenv("TDSYNC_MONGO_URI", store_process.uri)
    return {**tdsync_env, "TDSYNC_MONGO_URI": store_process.uri}


# -- killing tdsync's connection to a source database from another connection ------------------


class BackendKiller:
    """Terminates (`pg_terminate_backend`, from an admin connection) the PostgreSQL backend of
    the connection about to run a matching statement, and waits until it is gone: the statement
    then meets a dead connection, deterministically. Watches every engine of this process
    whose database is `database` (tdsync's source engines), for `times` statements."""

    def __init__(self, database: str, matches: Callable[[str], bool], times: int = 1) -> None:
        self.database, self.matches, self.left = database, matches, times
        self.killed: list[str] = []
        self._lock = threading.Lock()
        self._admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def __enter__(self) -> BackendKiller:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._before)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._before)
        self._admin.dispose()

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if conn.engine.url.database != self.database or not self.matches(statement):
            return
        with self._lock:
            if self.left <= 0:
                return
            self.left -= 1
        pid = cursor.connection.info.backend_pid
        with self._admin.connect() as admin:
            assert admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
            until(
                lambda: (
                    not admin.execute(
                        sa.text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                    ).first()
                ),
                f"backend {pid} is gone",
                timeout_s=10,
            )
        self.killed.append(statement)


# -- a PostgreSQL role with the canary password ---------------------------------------------------


@pytest.fixture
def canary_pg(pg_url: str) -> Iterator[str]:
    """A URI of the session's PostgreSQL test database for a new role whose password is CANARY."""
    role = f"tdsync_canary_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{CANARY}'"))
        conn.execute(sa.text(f"CREATE SCHEMA {role} AUTHORIZATION {role}"))
    url = sa.make_url(pg_url).set(username=role, password=CANARY)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {role} CASCADE"))
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.fixture
def canary_mysql() -> Iterator[str]:
    """A fresh MariaDB database holding one table, for a new user whose password is CANARY."""
    server = _server_database(MYSQL_ADMIN_URL, "MariaDB at 127.0.0.1:3306")
    url = sa.make_url(next(server))
    user = f"canary_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id INT PRIMARY KEY, state VARCHAR(10))"))
        conn.execute(sa.text("INSERT INTO orders VALUES (1, 'new'), (2, 'paid')"))
        for host in ("%", "localhost"):
            conn.execute(sa.text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{CANARY}'"))
            conn.execute(sa.text(f"GRANT ALL ON {url.database}.* TO '{user}'@'{host}'"))
    try:
        yield url.set(username=user, password=CANARY).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            for host in ("%", "localhost"):
                conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
        admin.dispose()
        next(server, None)


# -- the suite's own `tdsync api` process ---------------------------------------------------------


@pytest.fixture(scope="package")
def reliability_env(
    mongo_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    env = isolated_env(mongo_uri, tmp_path_factory.mktemp("reliability"))
    yield env
    open_store(settings_for(env)).client.drop_database(env["TDSYNC_MONGO_DB"])


@pytest.fixture(scope="package")
def reliability_api(
    reliability_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    server = ApiProcess(reliability_env, tmp_path_factory.mktemp("api-log") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="package")
def reliability_store(reliability_env: dict[str, str]) -> CatalogueStore:
    return open_store(settings_for(reliability_env))


def duplicates(store: CatalogueStore, connection_id: str) -> list[tuple[str, str]]:
    """(schema, table) keys stored more than once for a connection."""
    seen: dict[tuple[str, str], int] = {}
    for doc in store.descriptions.find({"db_connection_id": connection_id}):
        key = (doc["schema_name"], doc["table_name"])
        seen[key] = seen.get(key, 0) + 1
    return sorted(k for k, n in seen.items() if n > 1)


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}
