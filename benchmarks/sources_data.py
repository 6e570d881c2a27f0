"""Benchmark source databases: a PostgreSQL database of N tables over schemas, and a SQLite file.

Every table has 8 columns, a primary key and a foreign key (tables are grouped by ten: the
group's first table references itself, the nine others reference it), and a few rows so a
scan has examples and categories to find. The PostgreSQL database is built once, server-side
(one plpgsql block per schema), and reused by later runs while it still has the expected shape.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import psycopg2

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_DATABASE = "tdsync_bench_10k"
TABLES_PER_SCHEMA = 1000
SCHEMAS = 10
ROWS_PER_TABLE = 20
SHAPE_MARK = (
    f"tdsync-bench v1: {SCHEMAS} schemas x {TABLES_PER_SCHEMA} tables x {ROWS_PER_TABLE} rows"
)


def schema_name(i: int) -> str:
    return f"s{i:02d}"


def table_name(i: int) -> str:
    return f"t{i:04d}"


def pg_uri(database: str = PG_DATABASE) -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"


def _pg(dbname: str = "postgres"):
    conn = psycopg2.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}")
    conn.autocommit = True
    return conn


# One plpgsql block builds a whole schema server-side: no per-table round trip from here.
_BUILD_SCHEMA = """
DO $$
DECLARE
    s text := %(schema)s;
    n int := %(tables)s;
    rows int := %(rows)s;
    t text;
    head text;
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %%I', s);
    FOR i IN 0 .. n - 1 LOOP
        t := 't' || lpad(i::text, 4, '0');
        head := 't' || lpad(((i / 10) * 10)::text, 4, '0');
        CONTINUE WHEN to_regclass(format('%%I.%%I', s, t)) IS NOT NULL;  -- a repair: keep it
        EXECUTE format(
            'CREATE TABLE %%I.%%I ('
            ' id integer PRIMARY KEY,'
            ' parent_id integer REFERENCES %%I.%%I (id),'
            ' name varchar(64) NOT NULL,'
            ' status varchar(16),'
            ' amount numeric(12, 2),'
            ' created_at timestamptz,'
            ' is_active boolean,'
            ' note text)',
            s, t, s, head);
        EXECUTE format(
            'INSERT INTO %%I.%%I SELECT g, CASE WHEN g > 1 THEN 1 END, %%L || g,'
            ' (ARRAY[''new'', ''paid'', ''shipped'', ''returned''])[1 + mod(g, 4)],'
            ' g * 1.25, timestamptz ''2024-01-01'' + g * interval ''1 day'','
            ' mod(g, 2) = 0, repeat(''note '', 1 + mod(g, 3))'
            ' FROM generate_series(1, %%s) g',
            s, t, t || ' row ', rows);
        -- Statistics, as a live database has them: the scan reads categories from pg_stats.
        EXECUTE format('ANALYZE %%I.%%I', s, t);
    END LOOP;
END $$;
"""

_TABLE_DDL = (
    "CREATE TABLE {s}.{t} (id integer PRIMARY KEY, parent_id integer REFERENCES {s}.{head} (id),"
    " name varchar(64) NOT NULL, status varchar(16), amount numeric(12, 2),"
    " created_at timestamptz, is_active boolean, note text)"
)


def _shape_ok(dbname: str) -> bool:
    conn = _pg(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT n.nspname, count(*) FILTER (WHERE c.relname ~ '^t[0-9]{4}$'), count(*)"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'r' AND n.nspname ~ '^s[0-9]{2}$' GROUP BY 1"
            )
            counts = {schema: (ours, total) for schema, ours, total in cur.fetchall()}
    finally:
        conn.close()
    expected = {schema_name(i): (TABLES_PER_SCHEMA, TABLES_PER_SCHEMA) for i in range(SCHEMAS)}
    return counts == expected


def _marked(dbname: str) -> bool:
    with closing(_pg()) as admin, admin.cursor() as cur:
        cur.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (dbname,),
        )
        row = cur.fetchone()
    return row is not None and row[0] == SHAPE_MARK


def repair_pg_database() -> None:
    """Back to the built shape after an interrupted run: extra tables dropped, missing rebuilt."""
    conn = _pg(PG_DATABASE)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT format('DROP TABLE %I.%I', n.nspname, c.relname) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
                " AND n.nspname ~ '^s[0-9]{2}$' AND c.relname !~ '^t[0-9]{4}$'"
            )
            drops = [row[0] for row in cur.fetchall()]
            if drops:
                cur.execute(";".join(drops))
            for i in range(SCHEMAS):
                cur.execute(
                    _BUILD_SCHEMA,
                    {"schema": schema_name(i), "tables": TABLES_PER_SCHEMA, "rows": ROWS_PER_TABLE},
                )
    finally:
        conn.close()


def ensure_pg_database(log=print) -> str:
    """The reusable 10,000-table database; built (about 90 s) only when missing or altered."""
    if _marked(PG_DATABASE):
        if not _shape_ok(PG_DATABASE):
            log(f"repairing PostgreSQL database {PG_DATABASE} (an earlier run was interrupted)")
            repair_pg_database()
        if _shape_ok(PG_DATABASE):
            log(f"reusing PostgreSQL database {PG_DATABASE}")
            return pg_uri()
    started = time.perf_counter()
    log(f"building PostgreSQL database {PG_DATABASE} ({SCHEMAS * TABLES_PER_SCHEMA} tables)…")
    with closing(_pg()) as admin, admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {PG_DATABASE}")
    conn = _pg(PG_DATABASE)
    try:
        conn.autocommit = False
        # One transaction per schema: a single one for all 10,000 tables overflows the server's
        # lock table (max_locks_per_transaction). The shape mark is written last, so a build
        # that stopped half-way is rebuilt next time.
        with conn.cursor() as cur:
            for i in range(SCHEMAS):
                cur.execute(
                    _BUILD_SCHEMA,
                    {"schema": schema_name(i), "tables": TABLES_PER_SCHEMA, "rows": ROWS_PER_TABLE},
                )
                conn.commit()
    finally:
        conn.close()
    with closing(_pg()) as admin, admin.cursor() as cur:
        cur.execute(f"COMMENT ON DATABASE {PG_DATABASE} IS %s", (SHAPE_MARK,))
    log(f"built in {time.perf_counter() - started:.1f} s")
    return pg_uri()


def churn_names(
    run: int, count: int, schemas: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The tables one churn run drops (never a group head: nothing else references them) and adds."""
    dropped, added = [], []
    for k in range(count):
        schema = schema_name(k % schemas)
        slot = (run * count + k) // schemas
        index = (slot // 9) * 10 + 1 + slot % 9  # skip heads (multiples of ten)
        dropped.append((schema, table_name(index % TABLES_PER_SCHEMA)))
        added.append((schema, f"new_r{run}_{k:04d}"))
    return dropped, added


def pg_churn(run: int, count: int, schemas: int) -> None:
    dropped, added = churn_names(run, count, schemas)
    statements = [f"DROP TABLE {s}.{t}" for s, t in dropped]
    statements += [_TABLE_DDL.format(s=s, t=t, head="t0000") for s, t in added]
    _execute_pg(statements)


def pg_unchurn(run: int, count: int, schemas: int) -> None:
    """Undo pg_churn: the added tables dropped, the dropped ones rebuilt (rows, statistics)."""
    _, added = churn_names(run, count, schemas)
    _execute_pg([f"DROP TABLE IF EXISTS {s}.{t}" for s, t in added])
    repair_pg_database()


def _execute_pg(statements: list[str]) -> None:
    conn = _pg(PG_DATABASE)
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute(";\n".join(statements))
        conn.commit()
    finally:
        conn.close()


def build_sqlite(path: Path, tables: int = 1000) -> str:
    """A fresh SQLite file of `tables` tables of the same shape (one executescript, one transaction)."""
    path.unlink(missing_ok=True)
    parts = ["BEGIN;"]
    for i in range(tables):
        t, head = table_name(i), table_name(i // 10 * 10)
        parts.append(
            f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES {head} (id),"
            " name VARCHAR(64) NOT NULL, status VARCHAR(16), amount NUMERIC(12, 2),"
            " created_at TIMESTAMP, is_active BOOLEAN, note TEXT);"
        )
        rows = ", ".join(
            f"({g}, {1 if g > 1 else 'NULL'}, '{t} row {g}', '{('new', 'paid', 'shipped', 'returned')[g % 4]}',"
            f" {g * 1.25}, '2024-01-{1 + g % 28:02d} 00:00:00', {g % 2 == 0:d}, 'note')"
            for g in range(1, ROWS_PER_TABLE + 1)
        )
        parts.append(f"INSERT INTO {t} VALUES {rows};")
    parts.append("COMMIT;")
    conn = sqlite3.connect(path)
    try:
        conn.executescript("\n".join(parts))
    finally:
        conn.close()
    return f"sqlite:///{path}"


def sqlite_churn(path: Path, run: int, count: int) -> None:
    dropped, added = churn_names(run, count, 1)
    conn = sqlite3.connect(path)
    try:
        script = ["BEGIN;"]
        script += [f"DROP TABLE {t};" for _, t in dropped]
        script += [
            f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES t0000 (id),"
            " name VARCHAR(64) NOT NULL, status VARCHAR(16), amount NUMERIC(12, 2),"
            " created_at TIMESTAMP, is_active BOOLEAN, note TEXT);"
            for _, t in added
        ]
        script.append("COMMIT;")
        conn.executescript("\n".join(script))
    finally:
        conn.close()


# -- issue 17: structural change, renames ----------------------------------------------------


def spread(count: int, schemas: int, offset: int = 0) -> list[tuple[str, str]]:
    """`count` non-head tables spread over the schemas from the top (t0999 down), clear of the
    low indices pg_churn drops; `offset` skips the first ones, so calls can take disjoint sets."""
    picked = []
    for k in range(offset, offset + count):
        slot = k // schemas
        index = TABLES_PER_SCHEMA - 1 - ((slot // 9) * 10 + slot % 9)  # never a multiple of ten
        picked.append((schema_name(k % schemas), table_name(index)))
    return picked


def pg_add_column(tables: list[tuple[str, str]], column: str) -> None:
    _execute_pg([f"ALTER TABLE {s}.{t} ADD COLUMN {column} integer" for s, t in tables])


def pg_drop_column(tables: list[tuple[str, str]], column: str) -> None:
    _execute_pg([f"ALTER TABLE {s}.{t} DROP COLUMN IF EXISTS {column}" for s, t in tables])


def pg_rename(pairs: list[tuple[str, str, str]]) -> None:
    """(schema, old, new) renames."""
    _execute_pg([f"ALTER TABLE {s}.{old} RENAME TO {new}" for s, old, new in pairs])


# -- issue 18: one connection of 100,000 tables ------------------------------------------------

BIG_DATABASE = "tdsync_bench_100k"
BIG_SCHEMAS = 10
BIG_TABLES_PER_SCHEMA = 10_000
BIG_ROWS_PER_TABLE = 3
BIG_SHAPE_MARK = (
    f"tdsync-bench-100k v1: {BIG_SCHEMAS} schemas x {BIG_TABLES_PER_SCHEMA} tables"
    f" x {BIG_ROWS_PER_TABLE} rows"
)


def big_schema_name(i: int) -> str:
    return f"big{i:02d}"


# Small tables (3 columns, a primary key, 3 rows, no TOAST table, no statistics) keep the
# database near 2 GB. A COMMIT every 500 tables keeps each transaction within the server's lock
# table (max_locks_per_transaction); a table already there is kept, so a stopped build resumes.
_BUILD_BIG_SCHEMA = """
DO $$
DECLARE
    s text := %(schema)s;
    t text;
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %%I', s);
    COMMIT;
    FOR i IN 0 .. %(tables)s - 1 LOOP
        t := 't' || lpad(i::text, 5, '0');
        CONTINUE WHEN to_regclass(format('%%I.%%I', s, t)) IS NOT NULL;
        EXECUTE format(
            'CREATE TABLE %%I.%%I (id integer PRIMARY KEY, name varchar(32) NOT NULL,'
            ' amount integer)', s, t);
        EXECUTE format(
            'INSERT INTO %%I.%%I SELECT g, %%L || g, g * 7 FROM generate_series(1, %%s) g',
            s, t, t || ' row ', %(rows)s);
        IF i %% 500 = 499 THEN
            COMMIT;
        END IF;
    END LOOP;
END $$;
"""


def big_schemas() -> list[str]:
    return [big_schema_name(i) for i in range(BIG_SCHEMAS)]


def _big_shape_ok() -> bool:
    conn = _pg(BIG_DATABASE)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT n.nspname, count(*) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'r' AND n.nspname ~ '^big[0-9]{2}$' GROUP BY 1"
            )
            counts = dict(cur.fetchall())
    finally:
        conn.close()
    return counts == {schema: BIG_TABLES_PER_SCHEMA for schema in big_schemas()}


def ensure_pg_big_database(log=print) -> str:
    """The reusable 100,000-table database; built (about 15 minutes) only when missing, resumed
    when a build stopped half-way (the shape mark is written last)."""
    with closing(_pg()) as admin, admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BIG_DATABASE,))
        exists = cur.fetchone() is not None
        if not exists:
            cur.execute(f"CREATE DATABASE {BIG_DATABASE}")
    if exists and _marked_as(BIG_DATABASE, BIG_SHAPE_MARK) and _big_shape_ok():
        log(f"reusing PostgreSQL database {BIG_DATABASE}")
        return pg_uri(BIG_DATABASE)
    started = time.perf_counter()
    log(
        f"building PostgreSQL database {BIG_DATABASE} ({BIG_SCHEMAS * BIG_TABLES_PER_SCHEMA} tables)…"
    )
    conn = _pg(BIG_DATABASE)
    try:
        with conn.cursor() as cur:
            # Built once, read only by listings: nothing is worth an fsync per commit.
            cur.execute("SET synchronous_commit = off")
            for i in range(BIG_SCHEMAS):
                cur.execute(
                    _BUILD_BIG_SCHEMA,
                    {
                        "schema": big_schema_name(i),
                        "tables": BIG_TABLES_PER_SCHEMA,
                        "rows": BIG_ROWS_PER_TABLE,
                    },
                )
                log(f"  {big_schema_name(i)} built ({time.perf_counter() - started:.0f} s)")
    finally:
        conn.close()
    if not _big_shape_ok():
        raise RuntimeError(f"{BIG_DATABASE} does not have its expected shape after its build")
    with closing(_pg()) as admin, admin.cursor() as cur:
        cur.execute(f"COMMENT ON DATABASE {BIG_DATABASE} IS %s", (BIG_SHAPE_MARK,))
        cur.execute("SELECT pg_size_pretty(pg_database_size(%s))", (BIG_DATABASE,))
        size = cur.fetchone()[0]
    log(f"built in {time.perf_counter() - started:.1f} s, {size}")
    return pg_uri(BIG_DATABASE)


def _marked_as(dbname: str, mark: str) -> bool:
    with closing(_pg()) as admin, admin.cursor() as cur:
        cur.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (dbname,),
        )
        row = cur.fetchone()
    return row is not None and row[0] == mark
