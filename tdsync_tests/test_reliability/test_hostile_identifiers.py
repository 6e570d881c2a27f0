"""Hostile names in source databases: refresh and scan store them exactly and inject nothing.

Each source holds a `canary` table and tables, views and columns (and, on PostgreSQL, a schema)
named with quotes, semicolons, spaces, unicode, placeholders, dots, backslashes, newlines, Mongo
operators, SQL fragments and the longest name the database allows (63 bytes on PostgreSQL, 64
characters on MariaDB). After a refresh and a scan through the jobs, the catalogue names every
object exactly as the database does, every table is SCANNED, its stored DDL recreates it under its
exact name, the canary still holds its row, and every statement tdsync sent to the source was a
read.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.models import Status
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, _server_database
from tdsync_tests.test_reliability.conftest import duplicates
from tdsync_tests.test_scan.conftest import run_statements

INJECTION = 'x"; DROP TABLE canary; --'
COMMON_TABLES = [
    INJECTION,
    "Robert'); DROP TABLE canary;--",
    "semi;colon",
    "with  space",
    "ünïcødé 表",
    "MixedCase",
    "mixedcase",
    "a.b",
    "%s",
    "%(x)s",
    ":param",
    "back\\slash",
    "$where",
]
# Column names: the same spirit, plus names Mongo treats specially as keys (examples are stored
# as {column: value} objects).
COLUMNS = [
    '"; DROP TABLE canary; --',
    "it's",
    "$where",
    "a.b",
    "%s",
    "ünï code",
    "password",
]
READS = re.compile(r"^\s*(SELECT|SHOW|WITH|SET|PRAGMA|DESCRIBE|EXPLAIN)\b", re.IGNORECASE)


class Dialect:
    def __init__(self, name: str, quote: str, tables: list[str], schema: str | None = None) -> None:
        self.name, self.quote, self.tables = name, quote, tables
        self.schema = schema  # a second, hostile schema holding a table of the same hostile name

    def q(self, name: str) -> str:
        return f"{self.quote}{name.replace(self.quote, self.quote * 2)}{self.quote}"

    def statements(self) -> list[str]:
        text = "TEXT" if self.name != "mariadb" else "VARCHAR(20)"
        columns = ", ".join(f"{self.q(c)} {text}" for c in COLUMNS)
        out = [f"CREATE TABLE canary (id INTEGER PRIMARY KEY, {self.q('note')} {text})"]
        out.append("INSERT INTO canary VALUES (1, 'still here')")
        for table in self.tables:
            out.append(f"CREATE TABLE {self.q(table)} (id INTEGER PRIMARY KEY, {columns})")
            values = ", ".join("'v'" for _ in COLUMNS)
            out.append(f"INSERT INTO {self.q(table)} VALUES (1, {values})")
        first = self.q(self.tables[0])
        out.append(f"CREATE VIEW {self.q('view ' + INJECTION)} AS SELECT * FROM {first}")
        if self.schema:
            out.append(f"CREATE SCHEMA {self.q(self.schema)}")
            out.append(f"CREATE TABLE {self.q(self.schema)}.{first} (id INTEGER PRIMARY KEY)")
        return out

    def expected(self, default_schema: str) -> set[tuple[str, str]]:
        names = {"canary", *self.tables, "view " + INJECTION}
        found = {(default_schema, name) for name in names}
        return found | ({(self.schema, self.tables[0])} if self.schema else set())


PG_MAX = "n" * 63  # NAMEDATALEN - 1 bytes
PG_MAX_UNICODE = "é" * 31 + "x"  # 63 bytes in UTF-8
MARIADB_MAX = "m" * 64
DIALECTS = {
    "postgresql": Dialect(
        "postgresql",
        '"',
        [*COMMON_TABLES, "new\nline", PG_MAX, PG_MAX_UNICODE],
        schema='s"; DROP TABLE public.canary; --',
    ),
    # MariaDB: names cannot end with a space or hold a NUL; `/` and `\` are fine.
    "mariadb": Dialect("mariadb", "`", [*COMMON_TABLES, "x`; DROP TABLE canary; --", MARIADB_MAX]),
    # SQLite: names are case-insensitive (`MixedCase` is `mixedcase`) and have no length limit.
    "sqlite": Dialect(
        "sqlite",
        '"',
        [*(t for t in COMMON_TABLES if t != "mixedcase"), "new\nline", "[bracket]", "L" * 300],
    ),
}


@pytest.fixture
def hostile_source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    dialect = DIALECTS[request.param]
    if dialect.name == "sqlite":
        path = tmp_path / "hostile.db"
        with sqlite3.connect(path) as db:
            for statement in dialect.statements():
                db.execute(statement)
        yield dialect.name, f"sqlite:///{path}"
        return
    admin, what = (
        (PG_ADMIN_URL, "PostgreSQL")
        if dialect.name == "postgresql"
        else (MYSQL_ADMIN_URL, "MariaDB")
    )
    server = _server_database(admin, what)
    url = next(server)
    run_statements(url, dialect.statements())
    yield dialect.name, url
    next(server, None)


class StatementLog:
    """Every statement this process sends to the source database (tdsync's engines)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.statements: list[str] = []

    def __enter__(self) -> StatementLog:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.database in str(conn.engine.url.database):
            self.statements.append(statement)


def replayed(dialect: Dialect, ddl: list[str], tmp_path: Path) -> set[tuple[str, str]]:
    """Run the stored DDL in an empty database; returns the (schema, name) of the tables made,
    schema None for the default one."""
    dialect_name = dialect.name
    if dialect_name == "sqlite":
        server, uri = None, f"sqlite:///{tmp_path / 'replay.db'}"
    else:
        admin = PG_ADMIN_URL if dialect_name == "postgresql" else MYSQL_ADMIN_URL
        server = _server_database(admin, dialect_name)
        uri = next(server)
    engine = sa.create_engine(uri)
    try:
        with engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            if dialect.schema:
                cursor.execute(f"CREATE SCHEMA {dialect.q(dialect.schema)}")
            for statement in ddl:
                cursor.execute(statement)  # no parameters: the driver reads `%` as itself
        inspector = sa.inspect(engine)
        return {
            (schema, name)
            for schema in [None, *([dialect.schema] if dialect.schema else [])]
            for name in inspector.get_table_names(schema=schema)
        }
    finally:
        engine.dispose()
        if server is not None:
            next(server, None)


def canary_rows(uri: str) -> list[tuple]:
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text("SELECT id, note FROM canary"))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("hostile_source", list(DIALECTS), indirect=True)
def test_hostile_names_are_catalogued_exactly_and_inject_nothing(
    store: CatalogueStore, hostile_source: tuple[str, str], tmp_path: Path, settings: Settings
):
    dialect_name, uri = hostile_source
    dialect = DIALECTS[dialect_name]
    default = {"postgresql": "public", "sqlite": "main"}.get(dialect_name)
    default = default or sa.make_url(uri).database  # MariaDB: the database is the schema
    schemas = [default, dialect.schema] if dialect.schema else None
    connection_id = store.add_connection(
        alias=f"hostile-{dialect_name}", connection_uri=uri, schemas=schemas
    ).id
    database = sa.make_url(uri).database

    with StatementLog(Path(database).name if dialect_name == "sqlite" else database) as log:
        runs.refresh(connection_id, trigger="cli", settings=settings)
        summary = runs.scan(connection_id, trigger="cli", settings=settings)
        runs.refresh(
            connection_id, trigger="cli", settings=settings
        )  # nothing changed: nothing to write

    rows = store.list_descriptions(connection_id)
    assert {(d.schema_name, d.table_name) for d in rows} == dialect.expected(default)
    assert duplicates(store, connection_id) == []
    failed = {d.table_name: d.error_message for d in rows if d.status != Status.SCANNED}
    assert failed == {}
    assert summary["failed"] == 0
    for row in rows:
        if row.table_name == "canary":
            continue
        if row.schema_name == dialect.schema:
            assert [c.name for c in row.columns] == ["id"]
            continue
        assert [c.name for c in row.columns] == ["id", *COLUMNS], row.table_name
        if row.table_type.value == "TABLE":
            [example] = row.examples
            assert set(example) == {"id", *COLUMNS}  # `$where`, `a.b` kept as keys
            assert example["password"] == "*****" and example["it's"] == "v"
    tables = {
        (None if d.schema_name == default else d.schema_name, d.table_name): d.table_schema
        for d in rows
        if d.table_type == "TABLE"
    }
    assert replayed(dialect, list(tables.values()), tmp_path) == set(tables)
    assert canary_rows(uri) == [(1, "still here")]
    writes = [s for s in log.statements if not READS.match(s)]
    assert log.statements and writes == []
