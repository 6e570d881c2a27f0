"""Live listing on real engines (SQLite, PostgreSQL, MariaDB) and failing fast on bad sources."""

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tdsync.config.settings import Settings
from tdsync.domain.errors import InvalidDatabaseConnection
from tdsync.domain.models import TableType
from tdsync.domain.refresh_rules import Listing
from tdsync.sources.engine import source_engine
from tdsync.sources.listing import list_live_tables
from tdsync_tests.conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, _server_database, execute
from tdsync_tests.test_api.live import free_port

T, V, M = TableType.TABLE, TableType.VIEW, TableType.MATERIALIZED_VIEW


def names(listing: Listing) -> dict[str, list[tuple[str, TableType]] | None]:
    return {
        schema: None if tables is None else [(t.table_name, t.table_type) for t in tables]
        for schema, tables in listing.schemas.items()
    }


# -- SQLite ----------------------------------------------------------------------------------


def _shop(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
            CREATE TABLE "OrderItems" (id INTEGER PRIMARY KEY);
            CREATE VIEW big_customers AS SELECT * FROM customers;
            """
        )


def test_sqlite_lists_tables_and_views_in_main_by_default(
    sqlite_path: Path, source_settings: Settings
) -> None:
    _shop(sqlite_path)
    expected = {"main": [("OrderItems", T), ("big_customers", V), ("customers", T)]}
    assert (
        names(list_live_tables(f"sqlite:///{sqlite_path}", None, settings=source_settings))
        == expected
    )
    assert (
        names(list_live_tables(f"sqlite:///{sqlite_path}", ["main"], settings=source_settings))
        == expected
    )


def test_sqlite_path_with_url_special_characters_is_read_as_is(
    tmp_path: Path, source_settings: Settings
) -> None:
    # `#` starts a fragment and `%` an escape in a SQLite URI: the file must still be found.
    path = tmp_path / "shop #1 100%.db"
    _shop(path)
    assert names(list_live_tables(f"sqlite:///{path}", None, settings=source_settings))["main"][
        0
    ] == (
        "OrderItems",
        T,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop #1 100%.db"]


def test_missing_sqlite_file_is_invalid_and_never_created(
    tmp_path: Path, source_settings: Settings
) -> None:
    path = tmp_path / "typo" / "shop.db"
    missing = tmp_path / "shopp.db"
    for target in (path, missing):
        with pytest.raises(InvalidDatabaseConnection) as err:
            list_live_tables(f"sqlite:///{target}", None, settings=source_settings)
        assert err.value.error_code == "invalid_database_connection"
        assert not target.exists()


def test_file_that_is_not_a_database_is_invalid(tmp_path: Path, source_settings: Settings) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database")
    with pytest.raises(InvalidDatabaseConnection) as err:
        list_live_tables(f"sqlite:///{path}", None, settings=source_settings)
    assert err.value.detail == {"reason": "file is not a database"}
    assert path.read_text() == "not a database"


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_shop() -> Iterator[str]:
    """Two schemas, a view, a materialized view, a mixed-case table, "Users" beside users."""
    for url in _server_database(PG_ADMIN_URL, "PostgreSQL at 127.0.0.1:5432"):
        execute(
            url,
            "CREATE TABLE users (id int PRIMARY KEY)",
            'CREATE TABLE "Users" (id int PRIMARY KEY)',
            'CREATE TABLE "OrderItems" (id int)',
            "CREATE VIEW active_users AS SELECT * FROM users",
            "CREATE MATERIALIZED VIEW user_count AS SELECT count(*) AS n FROM users",
            "CREATE SCHEMA sales",
            "CREATE TABLE sales.invoices (id int)",
            "CREATE VIEW sales.open_invoices AS SELECT * FROM sales.invoices",
            'CREATE SCHEMA "Empty"',
        )
        yield url


PG_PUBLIC = [
    ("OrderItems", T),
    ("Users", T),
    ("active_users", V),
    ("user_count", M),
    ("users", T),
]


def test_postgres_default_schema_is_public(pg_shop: str, source_settings: Settings) -> None:
    assert names(list_live_tables(pg_shop, None, settings=source_settings)) == {"public": PG_PUBLIC}


def test_postgres_lists_each_named_schema_with_names_as_reported(
    pg_shop: str, source_settings: Settings
) -> None:
    listing = list_live_tables(
        pg_shop, ["public", "sales", "Empty", "nope"], settings=source_settings
    )
    assert names(listing) == {
        "public": PG_PUBLIC,
        "sales": [("invoices", T), ("open_invoices", V)],
        "Empty": [],  # exists, holds nothing
        "nope": None,  # does not exist
    }


def test_postgres_options_of_the_uri_are_kept_beside_the_statement_timeout(
    pg_shop: str, source_settings: Settings
) -> None:
    uri = f"{pg_shop}?options=-c%20search_path%3Dsales%20-c%20statement_timeout%3D0"
    with (
        source_engine(uri, timeout_s=3, settings=source_settings) as engine,
        engine.connect() as conn,
    ):
        assert conn.exec_driver_sql("SHOW search_path").scalar() == "sales"
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "3s"
        assert conn.exec_driver_sql("SELECT count(*) FROM invoices").scalar() == 0


# -- MariaDB ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mysql_shop() -> Iterator[str]:
    for url in _server_database(MYSQL_ADMIN_URL, "MariaDB at 127.0.0.1:3306"):
        execute(
            url,
            "CREATE TABLE users (id int PRIMARY KEY)",
            "CREATE TABLE Users (id int PRIMARY KEY)",
            "CREATE TABLE OrderItems (id int)",
            "CREATE VIEW active_users AS SELECT * FROM users",
        )
        yield url


def test_mariadb_default_schema_is_the_database_name(
    mysql_shop: str, source_settings: Settings
) -> None:
    database = sa.make_url(mysql_shop).database
    expected = [("OrderItems", T), ("Users", T), ("active_users", V), ("users", T)]
    assert names(list_live_tables(mysql_shop, None, settings=source_settings)) == {
        database: expected
    }
    assert names(list_live_tables(mysql_shop, [database], settings=source_settings)) == {
        database: expected
    }


def test_mariadb_uri_without_driver_uses_pymysql(
    mysql_shop: str, source_settings: Settings
) -> None:
    bare = mysql_shop.replace("mysql+pymysql://", "mariadb://", 1)
    database = sa.make_url(mysql_shop).database
    assert len(list_live_tables(bare, None, settings=source_settings).schemas[database]) == 4


# -- unreachable sources fail fast -----------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.mark.parametrize(
    "template",
    [
        "postgresql://postgres:s3cr3tpw@127.0.0.1:{port}/db",
        "mysql+pymysql://root:s3cr3tpw@127.0.0.1:{port}/db",
    ],
    ids=["postgresql", "mariadb"],
)
@pytest.mark.parametrize("port_kind", ["closed_port", "silent_port"])
def test_unreachable_source_is_invalid_within_the_timeout(
    template: str, port_kind: str, request: pytest.FixtureRequest, source_settings: Settings
) -> None:
    uri = template.format(port=request.getfixturevalue(port_kind))
    started = time.monotonic()
    with pytest.raises(InvalidDatabaseConnection) as err:
        list_live_tables(uri, None, timeout_s=1, settings=source_settings)
    elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed  # 1 s timeout; the rest is a loaded 2-core machine
    assert "s3cr3tpw" not in str(err.value.as_dict())
    assert err.value.detail["reason"]


@pytest.mark.parametrize(
    ("source", "slow_query"),
    [
        ("pg_shop", "SELECT pg_sleep(10)"),
        ("mysql_shop", "SELECT SLEEP(10)"),
        (
            "sqlite_path",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM (SELECT x FROM c LIMIT 1000000000)",
        ),
    ],
    ids=["postgresql", "mariadb", "sqlite"],
)
def test_statement_longer_than_the_timeout_is_cancelled(
    source: str, slow_query: str, request: pytest.FixtureRequest, source_settings: Settings
) -> None:
    value = request.getfixturevalue(source)
    uri = f"sqlite:///{value}" if source == "sqlite_path" else value
    started = time.monotonic()
    with (
        pytest.raises(InvalidDatabaseConnection),
        source_engine(uri, timeout_s=1, settings=source_settings) as engine,
        engine.connect() as conn,
    ):
        conn.execute(sa.text(slow_query)).all()
    assert time.monotonic() - started < 4


def test_wrong_password_is_invalid_and_never_echoed(
    pg_shop: str, source_settings: Settings
) -> None:
    url = sa.make_url(pg_shop).set(username="nobody_here", password="s3cr3tpw")
    with pytest.raises(InvalidDatabaseConnection) as err:
        list_live_tables(
            url.render_as_string(hide_password=False), None, timeout_s=2, settings=source_settings
        )
    assert "s3cr3tpw" not in str(err.value.as_dict())
