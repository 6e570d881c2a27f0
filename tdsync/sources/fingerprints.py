"""Sources layer: structural fingerprints of tables, read from each dialect's own catalog: one
query per schema (PostgreSQL: one for all the schemas).

A table's fingerprint is a hash of its column names, types and order; a view's, of its definition
(without its own name). Two objects with the same fingerprint have the same structure, so a table
that vanished and a new one sharing its fingerprint are one table renamed (tdsync.domain.refresh_rules), and a
table whose fingerprint has not changed since its last scan need not be reflected again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from tdsync.config.settings import Settings
from tdsync.domain.scan_model import Fingerprints
from tdsync.sources.engine import once_more_if_disconnected, source_engine

# Tables named per query at most: past this, whole schemas are read and filtered here
# (a catalog query over the schema is cheaper than matching thousands of bound names).
_MAX_NAMED = 500

# (schema, table name) -> fingerprint


def fingerprint_tables(
    connection_uri: str,
    tables: Iterable[tuple[str, str]],
    *,
    timeout_s: float = 10.0,
    ssh: dict[str, Any] | None = None,
    settings: Settings,
) -> Fingerprints:
    """Fingerprints of the named (schema, table) objects that exist; one query per schema
    (PostgreSQL: one in all)."""
    by_schema: dict[str, set[str]] = defaultdict(set)
    for schema, name in tables:
        by_schema[schema].add(name)
    if not by_schema:
        return {}
    with source_engine(connection_uri, timeout_s=timeout_s, ssh=ssh, settings=settings) as engine:

        def read() -> Fingerprints:
            with engine.connect() as conn:
                return read_fingerprints(conn, by_schema)

        return once_more_if_disconnected(read)


def read_fingerprints(conn: sa.Connection, tables: dict[str, set[str] | None]) -> Fingerprints:
    """Fingerprints of the named tables of each schema (None: all of the schema's tables)."""
    if conn.dialect.name == "postgresql":
        return _postgresql(conn, tables)
    found: Fingerprints = {}
    for schema, names in tables.items():
        named = sorted(names) if names is not None and len(names) <= _MAX_NAMED else None
        try:
            rows = list(_catalog_rows(conn, schema, named))
        except sa.exc.DBAPIError:
            # One unreadable object (SQLite: a view over a dropped table) fails the batch: read
            # one by one, and leave out those that fail (their scan or reflection says why).
            conn.rollback()
            rows = [] if names is None else _one_by_one(conn, schema, sorted(names))
        for name, kind, structure in rows:
            if names is None or name in names:
                found[(schema, name)] = fingerprint(kind, structure)
    return found


def _one_by_one(conn: sa.Connection, schema: str, names: list[str]) -> list:
    rows = []
    for name in names:
        try:
            rows += _catalog_rows(conn, schema, [name])
        except sa.exc.DBAPIError:
            conn.rollback()
    return rows


def fingerprint(kind: str, structure: object) -> str:
    """`kind` is "table" or "view"; `structure` its columns [(name, type)] or its definition."""
    if isinstance(structure, str):
        structure = _view_body(structure)
    blob = json.dumps([kind, structure], separators=(",", ":"))
    return hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()


# "CREATE [TEMP] VIEW [IF NOT EXISTS] name [(cols)] AS body": SQLite and DuckDB keep the whole
# statement, which names the view; a renamed view must keep its fingerprint.
_CREATE_VIEW = re.compile(r"^\s*create\s.*?\bview\b.*?\bas\b", re.IGNORECASE | re.DOTALL)


def _view_body(definition: str) -> str:
    body = _CREATE_VIEW.sub("", definition, count=1)
    return " ".join(body.split()).rstrip(";").strip()


def _catalog_rows(
    conn: sa.Connection, schema: str, names: list[str] | None
) -> Iterable[tuple[str, str, object]]:
    """(name, "table" | "view", columns or definition) for the schema's objects."""
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        return _mysql(conn, schema, names)
    if dialect == "sqlite":
        return _sqlite(conn, schema, names)
    if dialect == "duckdb":
        return _duckdb(conn, schema, names)
    raise NotImplementedError(f"no fingerprints for {dialect}")


# Every schema in one query: pg_class has no index on the schema alone, so a query per schema
# reads all of it again (10 schemas of 1,000 tables: 10 passes over 10,000 relations).
_PG = (
    "SELECT n.nspname, c.relname, c.relkind IN ('v', 'm'),"
    " CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END,"
    " array_agg(a.attname ORDER BY a.attnum),"
    " array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)"
    " FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0"
    " AND NOT a.attisdropped"
    " WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 'p', 'v', 'm') {named}"
    " GROUP BY c.oid, n.nspname, c.relname, c.relkind"
)


def _postgresql(conn: sa.Connection, tables: dict[str, set[str] | None]) -> Fingerprints:
    """read_fingerprints for PostgreSQL: one catalog query for all the schemas."""
    if not tables:
        return {}
    named = [n for names in tables.values() if names is not None for n in names]
    whole = any(names is None for names in tables.values()) or len(named) > _MAX_NAMED
    try:
        rows = _pg_rows(conn, list(tables), None if whole else named)
    except sa.exc.DBAPIError:
        # E.g. a view dropped while its definition was read: as for the other dialects, the
        # named tables are read one by one, and those that fail are left out.
        conn.rollback()
        rows = []
        for schema, names in tables.items():
            for name in sorted(names or ()):
                try:
                    rows += _pg_rows(conn, [schema], [name])
                except sa.exc.DBAPIError:
                    conn.rollback()
    found: Fingerprints = {}
    for schema, name, is_view, definition, columns, types in rows:
        names = tables.get(schema)
        if names is not None and name not in names:
            continue
        if is_view:
            found[(schema, name)] = fingerprint("view", definition)
        else:
            # A table without columns has [NULL] from the LEFT JOIN.
            structure = [[c, t] for c, t in zip(columns, types, strict=True) if c]
            found[(schema, name)] = fingerprint("table", structure)
    return found


def _pg_rows(conn: sa.Connection, schemas: list[str], names: list[str] | None) -> list:
    sql = _PG.format(named="" if names is None else "AND c.relname = ANY(:names)")
    params = {"schemas": schemas, "names": sorted(set(names or ()))}
    return list(conn.execute(sa.text(sql), params))


def _mysql(conn: sa.Connection, schema: str, names: list[str] | None):
    named = " AND c.TABLE_NAME IN :names" if names is not None else ""
    sql = sa.text(
        "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, v.VIEW_DEFINITION"
        " FROM information_schema.COLUMNS c LEFT JOIN information_schema.VIEWS v"
        " ON v.TABLE_SCHEMA = c.TABLE_SCHEMA AND v.TABLE_NAME = c.TABLE_NAME"
        f" WHERE c.TABLE_SCHEMA = :schema{named} ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION"
    )
    if names is not None:
        sql = sql.bindparams(sa.bindparam("names", expanding=True))
    yield from _grouped(conn.execute(sql, {"schema": schema, "names": names or [""]}))


def _sqlite(conn: sa.Connection, schema: str, names: list[str] | None):
    quoted = conn.dialect.identifier_preparer.quote(schema)
    named = " AND m.name IN :names" if names is not None else ""
    sql = sa.text(
        "SELECT m.name, p.name, p.type, CASE WHEN m.type = 'view' THEN m.sql END"
        f" FROM {quoted}.sqlite_master m JOIN pragma_table_info(m.name, :schema) p"
        f" WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%'{named}"
        " ORDER BY m.name, p.cid"
    )
    if names is not None:
        sql = sql.bindparams(sa.bindparam("names", expanding=True))
    yield from _grouped(conn.execute(sql, {"schema": schema, "names": names or [""]}))


def _duckdb(conn: sa.Connection, schema: str, names: list[str] | None):
    named = " AND c.table_name IN :names" if names is not None else ""
    sql = sa.text(
        "SELECT c.table_name, c.column_name, c.data_type, v.sql"
        " FROM duckdb_columns() c LEFT JOIN duckdb_views() v"
        " ON v.database_name = c.database_name AND v.schema_name = c.schema_name"
        " AND v.view_name = c.table_name"
        " WHERE c.database_name = current_database() AND c.schema_name = :schema"
        f"{named} ORDER BY c.table_name, c.column_index"
    )
    if names is not None:
        sql = sql.bindparams(sa.bindparam("names", expanding=True))
    yield from _grouped(conn.execute(sql, {"schema": schema, "names": names or [""]}))


def _grouped(rows: Iterable[tuple[str, str, str, str | None]]):
    """(table, column, type, view definition) rows, ordered by table -> one entry per table."""
    current, columns, definition = None, [], None
    for table, column, type_, view in rows:
        if table != current:
            if current is not None:
                yield _entry(current, columns, definition)
            current, columns, definition = table, [], view
        columns.append([column, type_])
    if current is not None:
        yield _entry(current, columns, definition)


def _entry(name: str, columns: list, definition: str | None) -> tuple[str, str, object]:
    return (name, "view", definition) if definition is not None else (name, "table", columns)
