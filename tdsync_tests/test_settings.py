"""Settings are read in one typed place and passed down; the embedded store's tuning stays its own.

Entry points build `Settings` once; library functions and resources take them as arguments, so
a test sets them without touching the environment.
"""

from __future__ import annotations

import ast
import sqlite3
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

import tdsync
from tdsync.cli.main import main
from tdsync.config import settings as config
from tdsync.config.settings import Settings
from tdsync.defs.resources import SourceDatabasesResource, StoreResource
from tdsync.domain.errors import InvalidDatabaseConnection
from tdsync.sources.check import check_connection
from tdsync.sources.engine import create_source_engine
from tdsync.store import mongo_client
from tdsync.store.client import shared_store
from tdsync_tests.conftest import secantus_tuned


def _retry_writes(uri: str, *, embedded: bool = False) -> bool:
    client = mongo_client(uri, timeout_ms=200, embedded=embedded)
    try:
        return client.options.retry_writes
    finally:
        client.close()


def test_a_production_mongodb_keeps_retryable_writes_unless_its_uri_says_otherwise() -> None:
    assert _retry_writes("mongodb://db.example:27017/") is True
    assert _retry_writes("mongodb://db.example:27017/?replicaSet=rs0") is True
    assert _retry_writes("mongodb://db.example:27017/?retryWrites=false") is False
    # Only the embedded SecantusDB has them off, whatever its URI says.
    assert _retry_writes("mongodb://127.0.0.1:27017/", embedded=True) is False


def test_a_test_store_uri_gets_secantus_tuning_only_when_it_is_a_secantusdb(mongo_uri: str) -> None:
    # The session's store is a SecantusDB unless TDSYNC_TEST_MONGO_URI names another server.
    bare = mongo_uri.split("?")[0].replace("retryWrites=false", "")
    tuned = secantus_tuned(bare)
    if tuned == bare:  # a real MongoDB: its defaults stay
        assert _retry_writes(bare) is True
    else:
        assert tuned.endswith("retryWrites=false") and _retry_writes(tuned) is False
    assert secantus_tuned(f"{bare}?retryWrites=true") == f"{bare}?retryWrites=true"


def test_library_functions_use_the_settings_they_are_given_not_the_environment(
    mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TDSYNC_HOME", "TDSYNC_MONGO_URI", "TDSYNC_MONGO_DB", "TDSYNC_ENCRYPTION_KEY"):
        monkeypatch.delenv(name, raising=False)  # nothing to fall back on
    settings = Settings(
        home=tmp_path / "home",
        mongo_uri=mongo_uri,
        mongo_db=f"tdsync_settings_{uuid.uuid4().hex[:8]}",
        encryption_key=Fernet.generate_key().decode(),
    )
    store = shared_store(settings)
    try:
        conn = store.add_connection(alias="given", connection_uri="sqlite:////tmp/x.db")
        assert store.db.name == settings.mongo_db
        assert store.get_connection("given").id == conn.id
    finally:
        store.client.drop_database(settings.mongo_db)

    # tdsync's own state is that of the given settings: a file in their home is never a source.
    inside = settings.home / "mongo" / "catalogue.db"
    inside.parent.mkdir(parents=True)
    sqlite3.connect(inside).close()
    for check in (
        lambda: create_source_engine(f"sqlite:///{inside}", settings=settings),
        lambda: check_connection(f"sqlite:///{inside}", settings=settings),
    ):
        with pytest.raises(InvalidDatabaseConnection, match="tdsync's own state"):
            check()
    create_source_engine(f"sqlite:///{inside}", settings=Settings(home=tmp_path / "other"))


def test_resources_fields_are_their_settings_and_win_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDSYNC_LEASE_WAIT_S", "300")
    monkeypatch.setenv("TDSYNC_SOURCE_TIMEOUT_S", "10")
    catalogue = StoreResource(home=str(tmp_path), mongo_db="given_db", lease_wait_s=7.5)
    settings = catalogue.settings()
    assert (settings.home, settings.mongo_db, settings.lease_wait_s) == (tmp_path, "given_db", 7.5)
    assert settings.dagster_home == tmp_path / "dagster"

    sources = SourceDatabasesResource(timeout_s=3.0).settings()
    assert (sources.source_timeout_s, sources.scan_stall_s) == (3.0, 9.0)  # stall: 3 x timeout
    unset = SourceDatabasesResource().settings()
    assert (unset.source_timeout_s, unset.scan_stall_s) == (10.0, 30.0)  # the environment's


def test_a_cli_command_reads_the_environment_once(
    tdsync_env: dict[str, str], sqlite_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite3.connect(sqlite_path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    reads = []
    from_env = Settings.from_env

    def counted() -> Settings:
        reads.append(1)
        return from_env()

    monkeypatch.setattr(config.Settings, "from_env", staticmethod(counted))
    for argv in (
        ["connections", "add", "shop", f"sqlite:///{sqlite_path}"],
        ["refresh", "shop"],
        ["scan", "shop", "--no-data"],
        ["connections", "list"],
    ):
        reads.clear()
        assert main(argv) == 0, argv
        assert len(reads) == 1, (argv, len(reads))


PACKAGE = Path(tdsync.__file__).parent


def test_only_the_entry_points_read_settings_from_the_environment() -> None:
    """The CLI, the detached scan process and `python -m tdsync.api.server` build Settings from
    the environment (the Dagster resources build theirs from their fields); nothing else does."""
    readers = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "Settings.from_env()" in path.read_text()
    )
    assert readers == ["api/server.py", "cli/main.py", "defs/scan_process.py"]


def test_every_function_that_takes_settings_requires_them() -> None:
    """No library function falls back to the environment when its caller passes no settings."""
    optional = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            positional = args.posonlyargs + args.args
            defaults = dict(zip(reversed(positional), reversed(args.defaults), strict=False))
            defaults |= {a: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d}
            if any(a.arg == "settings" for a in defaults):
                optional.append(f"{path.relative_to(PACKAGE).as_posix()}:{node.name}")
    assert optional == []
