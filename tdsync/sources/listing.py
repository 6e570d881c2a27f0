"""Sources layer: the live listing of a source's tables, views and materialized views."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tdsync.config.settings import Settings
from tdsync.domain.models import TableType
from tdsync.domain.refresh_rules import Listing, LiveTable
from tdsync.sources.engine import once_more_if_disconnected, source_engine


def list_live_tables(
    connection_uri: str,
    schemas: list[str] | None,
    *,
    timeout_s: float = 10.0,
    ssh: dict[str, Any] | None = None,
    settings: Settings,
) -> Listing:
    """Names and kinds of every table, view and materialized view, per schema; no data is read."""
    with source_engine(connection_uri, timeout_s=timeout_s, ssh=ssh, settings=settings) as engine:
        return once_more_if_disconnected(lambda: _list_live_tables(engine, schemas))


def _list_live_tables(engine: Engine, schemas: list[str] | None) -> Listing:
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if conn.dialect.name == "postgresql":
            targets = list(dict.fromkeys(schemas)) if schemas else [inspector.default_schema_name]
            return Listing(_list_postgresql(conn, targets, explicit=bool(schemas)))
        if schemas:
            existing = set(inspector.get_schema_names())
            targets = list(dict.fromkeys(schemas))
        else:
            default = inspector.default_schema_name or "main"
            existing, targets = {default}, [default]
        listing: dict[str, list[LiveTable] | None] = {}
        for schema in targets:
            if schema not in existing:
                listing[schema] = None
                continue
            listing[schema] = _list_schema(inspector, schema, explicit=bool(schemas))
        return Listing(listing)


def _list_schema(inspector: sa.Inspector, schema: str, *, explicit: bool) -> list[LiveTable]:
    # SQLite and DuckDB answer for their default schema with schema=None only.
    arg = schema if explicit else None
    found: dict[str, TableType] = {}
    for name in inspector.get_table_names(schema=arg):
        found[name] = TableType.TABLE
    for name in inspector.get_view_names(schema=arg):
        found[name] = TableType.VIEW
    try:
        materialized = inspector.get_materialized_view_names(schema=arg)
    except NotImplementedError:
        materialized = []
    for name in materialized:
        found[name] = TableType.MATERIALIZED_VIEW
    return [LiveTable(schema, name, kind) for name, kind in sorted(found.items())]


# The inspector asks PostgreSQL one query per schema and kind (plus one for the schema names),
# each a scan of pg_class: 31 queries and 0.35 s for 10 schemas of 1,000 tables. This is the
# same listing in one query: the inspector's filters (relkinds r/p, v, m; no temporary
# relations; explicit schemas named pg_* are not listed), and None for a missing schema.
_PG_LISTING = sa.text(
    "SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_namespace n"
    " LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid"
    " AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relpersistence != 't'"
    " WHERE n.nspname = ANY(:schemas)"
)
_PG_KINDS = {
    "r": TableType.TABLE,
    "p": TableType.TABLE,
    "v": TableType.VIEW,
    "m": TableType.MATERIALIZED_VIEW,
}


def _list_postgresql(
    conn: sa.Connection, targets: list[str], *, explicit: bool
) -> dict[str, list[LiveTable] | None]:
    found: dict[str, dict[str, TableType]] = {}
    for schema, name, kind in conn.execute(_PG_LISTING, {"schemas": targets}):
        if explicit and schema.startswith("pg_"):
            continue
        names = found.setdefault(schema, {})
        if name is not None:
            names[name] = _PG_KINDS[kind]
    return {
        schema: [LiveTable(schema, name, kind) for name, kind in sorted(found[schema].items())]
        if schema in found
        else None
        for schema in targets
    }
