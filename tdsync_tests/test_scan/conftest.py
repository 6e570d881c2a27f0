"""Source databases for the scan tests: the same shop on PostgreSQL, MariaDB, SQLite and DuckDB.

Composite primary and foreign keys, a view, enum-like columns, NULLs, JSON and binary columns, a
secret-looking column, a long text value and hostile names (quotes, spaces, unicode, semicolons).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tdsync.config.settings import Settings
from tdsync.sources.listing import list_live_tables
from tdsync_tests.conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, _server_database

HOSTILE_TABLE = 'Wéird "Tab" le'
LONG_NOTE = "x" * 500

PG_PREREQUISITES = [
    # What a fresh database needs before the scanned DDL can run: its types and schemas.
    "CREATE TYPE order_state AS ENUM ('new', 'paid', 'shipped')",
    'CREATE SCHEMA "sales ""eu"""',
]
PG_SHOP = [
    *PG_PREREQUISITES,
    """CREATE TABLE customers (id integer PRIMARY KEY, name varchar(50) NOT NULL,
       status varchar(20), tier smallint, notes text, password varchar(100), profile jsonb,
       avatar bytea, created_at timestamptz)""",
    f"""INSERT INTO customers VALUES
       (1, 'Ada', 'active', 1, NULL, 'hunter2', '{{"a": 1}}', '\\x0102', '2024-01-02T03:04:05Z'),
       (2, 'Bob', 'inactive', 2, '{LONG_NOTE}', 'pw2', '{{"b": [1, 2]}}', NULL, NULL),
       (3, 'Cy', 'active', 3, 'short', 'pw3', NULL, '\\x03', '2024-02-03T00:00:00Z'),
       (4, 'Di', NULL, 1, NULL, NULL, NULL, NULL, NULL)""",
    """CREATE TABLE orders (customer_id integer NOT NULL REFERENCES customers (id),
       order_no integer NOT NULL, state order_state NOT NULL, amount numeric(10, 2),
       PRIMARY KEY (customer_id, order_no))""",
    "INSERT INTO orders VALUES (1, 1, 'new', 10.5), (1, 2, 'paid', NULL), (3, 1, 'shipped', 99.99)",
    """CREATE TABLE order_lines (customer_id integer, order_no integer, line integer,
       sku varchar(20), PRIMARY KEY (customer_id, order_no, line),
       FOREIGN KEY (customer_id, order_no) REFERENCES orders (customer_id, order_no))""",
    "INSERT INTO order_lines VALUES (1, 1, 1, 'A-1'), (1, 1, 2, 'B-2')",
    'CREATE TABLE "Wéird ""Tab"" le" ("col with space" text, """quoted""" integer, '
    '"ünï" varchar(10), "semi;colon" integer)',
    """INSERT INTO "Wéird ""Tab"" le" VALUES ('a b', 1, 'ü', 2), (NULL, NULL, NULL, NULL)""",
    "CREATE VIEW active_customers AS SELECT id, name FROM customers WHERE status = 'active'",
    """CREATE MATERIALIZED VIEW order_totals AS
       SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id""",
    'CREATE TABLE "sales ""eu""".leads (id integer PRIMARY KEY, '
    "customer_id integer REFERENCES public.customers (id))",
]

MYSQL_SHOP = [
    """CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL,
       status VARCHAR(20), tier SMALLINT, notes TEXT, password VARCHAR(100), profile JSON,
       avatar BLOB, created_at DATETIME)""",
    f"""INSERT INTO customers VALUES
       (1, 'Ada', 'active', 1, NULL, 'hunter2', '{{"a": 1}}', X'0102', '2024-01-02 03:04:05'),
       (2, 'Bob', 'inactive', 2, '{LONG_NOTE}', 'pw2', '{{"b": [1, 2]}}', NULL, NULL),
       (3, 'Cy', 'active', 3, 'short', 'pw3', NULL, X'03', '2024-02-03 00:00:00'),
       (4, 'Di', NULL, 1, NULL, NULL, NULL, NULL, NULL)""",
    """CREATE TABLE orders (customer_id INT NOT NULL, order_no INT NOT NULL,
       state ENUM('new', 'paid', 'shipped') NOT NULL, amount DECIMAL(10, 2),
       PRIMARY KEY (customer_id, order_no), FOREIGN KEY (customer_id) REFERENCES customers (id))""",
    "INSERT INTO orders VALUES (1, 1, 'new', 10.5), (1, 2, 'paid', NULL), (3, 1, 'shipped', 99.99)",
    """CREATE TABLE order_lines (customer_id INT, order_no INT, line INT, sku VARCHAR(20),
       PRIMARY KEY (customer_id, order_no, line),
       FOREIGN KEY (customer_id, order_no) REFERENCES orders (customer_id, order_no))""",
    "INSERT INTO order_lines VALUES (1, 1, 1, 'A-1'), (1, 1, 2, 'B-2')",
    """CREATE TABLE `Wéird "Tab" le` (`col with space` TEXT, `"quoted"` INT, `ünï` VARCHAR(10),
       `semi;colon` INT)""",
    """INSERT INTO `Wéird "Tab" le` VALUES ('a b', 1, 'ü', 2), (NULL, NULL, NULL, NULL)""",
    "CREATE VIEW active_customers AS SELECT id, name FROM customers WHERE status = 'active'",
]

SQLITE_SHOP = [
    """CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL,
       status VARCHAR(20), tier SMALLINT, notes TEXT, password VARCHAR(100), profile JSON,
       avatar BLOB, created_at TIMESTAMP)""",
    f"""INSERT INTO customers VALUES
       (1, 'Ada', 'active', 1, NULL, 'hunter2', '{{"a": 1}}', X'0102', '2024-01-02 03:04:05'),
       (2, 'Bob', 'inactive', 2, '{LONG_NOTE}', 'pw2', '{{"b": [1, 2]}}', NULL, NULL),
       (3, 'Cy', 'active', 3, 'short', 'pw3', NULL, X'03', '2024-02-03 00:00:00'),
       (4, 'Di', NULL, 1, NULL, NULL, NULL, NULL, NULL)""",
    """CREATE TABLE orders (customer_id INTEGER NOT NULL REFERENCES customers (id),
       order_no INTEGER NOT NULL, state VARCHAR(10) NOT NULL, amount NUMERIC(10, 2),
       PRIMARY KEY (customer_id, order_no))""",
    "INSERT INTO orders VALUES (1, 1, 'new', 10.5), (1, 2, 'paid', NULL), (3, 1, 'shipped', 99.99)",
    """CREATE TABLE order_lines (customer_id INTEGER, order_no INTEGER, line INTEGER,
       sku VARCHAR(20), PRIMARY KEY (customer_id, order_no, line),
       FOREIGN KEY (customer_id, order_no) REFERENCES orders (customer_id, order_no))""",
    "INSERT INTO order_lines VALUES (1, 1, 1, 'A-1'), (1, 1, 2, 'B-2')",
    # `legacy` has no declared type at all, which SQLite allows.
    'CREATE TABLE "Wéird ""Tab"" le" ("col with space" TEXT, """quoted""" INTEGER, '
    '"ünï" VARCHAR(10), "semi;colon" INTEGER, legacy)',
    """INSERT INTO "Wéird ""Tab"" le" VALUES ('a b', 1, 'ü', 2, 'x'), (NULL, NULL, NULL, NULL, NULL)""",
    "CREATE VIEW active_customers AS SELECT id, name FROM customers WHERE status = 'active'",
]

DUCKDB_SHOP = [
    """CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, status VARCHAR,
       tier SMALLINT, notes VARCHAR, password VARCHAR, profile JSON, avatar BLOB,
       created_at TIMESTAMP)""",
    f"""INSERT INTO customers VALUES
       (1, 'Ada', 'active', 1, NULL, 'hunter2', '{{"a": 1}}', '\\x01\\x02'::BLOB, '2024-01-02 03:04:05'),
       (2, 'Bob', 'inactive', 2, '{LONG_NOTE}', 'pw2', '{{"b": [1, 2]}}', NULL, NULL),
       (3, 'Cy', 'active', 3, 'short', 'pw3', NULL, '\\x03'::BLOB, '2024-02-03 00:00:00'),
       (4, 'Di', NULL, 1, NULL, NULL, NULL, NULL, NULL)""",
    """CREATE TABLE orders (customer_id INTEGER NOT NULL REFERENCES customers (id),
       order_no INTEGER NOT NULL, state VARCHAR NOT NULL, amount DECIMAL(10, 2),
       PRIMARY KEY (customer_id, order_no))""",
    "INSERT INTO orders VALUES (1, 1, 'new', 10.5), (1, 2, 'paid', NULL), (3, 1, 'shipped', 99.99)",
    """CREATE TABLE order_lines (customer_id INTEGER, order_no INTEGER, line INTEGER,
       sku VARCHAR, PRIMARY KEY (customer_id, order_no, line),
       FOREIGN KEY (customer_id, order_no) REFERENCES orders (customer_id, order_no))""",
    "INSERT INTO order_lines VALUES (1, 1, 1, 'A-1'), (1, 1, 2, 'B-2')",
    'CREATE TABLE "Wéird ""Tab"" le" ("col with space" VARCHAR, """quoted""" INTEGER, '
    '"ünï" VARCHAR, "semi;colon" INTEGER)',
    """INSERT INTO "Wéird ""Tab"" le" VALUES ('a b', 1, 'ü', 2), (NULL, NULL, NULL, NULL)""",
    "CREATE VIEW active_customers AS SELECT id, name FROM customers WHERE status = 'active'",
]

DIALECTS = ["postgresql", "mariadb", "sqlite", "duckdb"]


def run_statements(uri: str, statements: list[str]) -> None:
    engine = sa.create_engine(uri)
    try:
        with engine.begin() as conn:
            for statement in statements:
                # psycopg2 and pymysql read `%` as a placeholder.
                pyformat = uri.startswith(("mysql", "mariadb", "postgresql"))
                conn.exec_driver_sql(statement.replace("%", "%%") if pyformat else statement)
    finally:
        engine.dispose()


class Sources:
    """Builds source databases of one dialect and empty ones to replay DDL into."""

    def __init__(self, dialect: str, tmp: Path) -> None:
        self.dialect = dialect
        self.tmp = tmp
        self._servers: list[Iterator[str]] = []

    def empty(self) -> str:
        if self.dialect == "postgresql":
            return self._server(PG_ADMIN_URL, "PostgreSQL at 127.0.0.1:5432")
        if self.dialect == "mariadb":
            return self._server(MYSQL_ADMIN_URL, "MariaDB at 127.0.0.1:3306")
        path = self.tmp / f"db_{len(list(self.tmp.iterdir()))}.{self.dialect}"
        if self.dialect == "sqlite":
            import sqlite3

            sqlite3.connect(path).close()
            return f"sqlite:///{path}"
        import duckdb

        duckdb.connect(str(path)).close()
        return f"duckdb:///{path}"

    def shop(self) -> tuple[str, list[str] | None]:
        """A source holding the shop; returns its URI and the schemas to catalogue."""
        uri = self.empty()
        shop = {
            "postgresql": PG_SHOP,
            "mariadb": MYSQL_SHOP,
            "sqlite": SQLITE_SHOP,
            "duckdb": DUCKDB_SHOP,
        }[self.dialect]
        run_statements(uri, shop)
        return uri, (["public", 'sales "eu"'] if self.dialect == "postgresql" else None)

    def _server(self, admin_url: str, what: str) -> str:
        server = _server_database(admin_url, what)
        self._servers.append(server)
        return next(server)

    def close(self) -> None:
        for server in self._servers:
            next(server, None)


@pytest.fixture(scope="module")
def sources_of(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Sources]]:
    made: list[Sources] = []

    def make(dialect: str) -> Sources:
        sources = Sources(dialect, tmp_path_factory.mktemp(dialect))
        made.append(sources)
        return sources

    yield make
    for sources in made:
        sources.close()


def live_targets(uri: str, schemas: list[str] | None, *, settings: Settings):
    """ScanTargets for every live table, as a refresh would have catalogued them."""
    from tdsync.domain.scan_model import ScanTarget

    listing = list_live_tables(uri, schemas, settings=settings)
    return [
        ScanTarget(
            f"{t.schema_name}.{t.table_name}", "c", t.schema_name, t.table_name, t.table_type
        )
        for tables in listing.schemas.values()
        for t in tables or []
    ]
