"""Sources layer: table structure: columns, keys and DDL of many tables in a few queries.

SQLAlchemy's batch reflection (`get_multi_columns`, `get_multi_pk_constraint`,
`get_multi_foreign_keys`) reads a whole chunk of a schema at once where the dialect implements it
(PostgreSQL); elsewhere SQLAlchemy loops per table itself. A batch that fails is retried table by
table, so one unreadable table fails alone. DuckDB's SQLAlchemy dialect cannot reflect keys, so
DuckDB is read from its own catalogue functions, which also keep each object's DDL.
"""

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.engine.reflection import ObjectKind
from sqlalchemy.types import NullType

from tdsync.domain.models import ForeignKey, TableType
from tdsync.sources.ddl import compiled_type, table_ddl, view_ddl
from tdsync.sources.percents import display_dialect, undo_doubled_percents
from tdsync.sources.reflect_duckdb import reflect_duckdb
from tdsync.sources.reflected import (
    REFLECTION_ERRORS,
    RawTable,
    ReflectedTable,
    TableNotFound,
    described_column,
    end_transaction,
    table_gone,
)
from tdsync.sources.views import view_definitions


def reflect_tables(
    conn: Connection, schema: str | None, tables: dict[str, TableType]
) -> dict[str, ReflectedTable | Exception]:
    """Structure of the named tables and views of one schema (None: the default schema)."""
    if conn.dialect.name == "duckdb":
        try:
            return reflect_duckdb(conn, schema, tables)
        except REFLECTION_ERRORS as exc:
            end_transaction(conn)
            return dict.fromkeys(tables, exc)
    names = list(tables)
    try:
        raw: dict[str, RawTable | Exception] = dict(_batch(conn, schema, names))
    except REFLECTION_ERRORS:
        end_transaction(conn)
        raw = {}
        for name in names:
            try:
                raw.update(_batch(conn, schema, [name]))
            except REFLECTION_ERRORS as exc:
                end_transaction(conn)
                raw[name] = exc
    views = {n: t for n, t in tables.items() if t != TableType.TABLE and n in raw}
    if conn.dialect.name in ("mysql", "mariadb"):
        undo_doubled_percents(conn.dialect, raw, views)
    try:
        definitions = view_definitions(conn, schema, views)
        raw_types = _raw_types(conn, schema, raw)
    except REFLECTION_ERRORS:  # such a view fails alone below, without its definition
        end_transaction(conn)
        definitions, raw_types = {}, {}

    out: dict[str, ReflectedTable | Exception] = {}
    display = display_dialect(conn.dialect)
    for name, kind in tables.items():
        found = raw.get(name)
        if found is None:
            out[name] = table_gone(name)
        elif isinstance(found, Exception):
            out[name] = found
        else:
            try:
                out[name] = _build(
                    display, schema, name, kind, found, definitions.get(name), raw_types
                )
            except Exception as exc:  # a type SQLAlchemy cannot render: this table fails alone
                out[name] = exc
    return out


def _batch(conn: Connection, schema: str | None, names: list[str]) -> dict[str, RawTable]:
    insp = sa.inspect(conn)
    args = {"schema": schema, "filter_names": names, "kind": ObjectKind.ANY}
    columns = insp.get_multi_columns(**args)
    pks = insp.get_multi_pk_constraint(**args)
    fks = insp.get_multi_foreign_keys(**args)
    try:
        uniques = insp.get_multi_unique_constraints(**args)
    except NotImplementedError:
        uniques = {}
    return {
        name: RawTable(cols, pks.get(key), fks.get(key) or [], uniques.get(key) or [])
        for key, cols in columns.items()
        for name in [key[1]]
    }


class _RawType(sa.types.UserDefinedType):
    """A type SQLAlchemy does not know, rendered as the database spells it."""

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **kw: Any) -> str:
        return self.spec


def _raw_types(
    conn: Connection, schema: str | None, raw: dict[str, RawTable | Exception]
) -> dict[tuple[str, str], str]:
    """The database's own names of types SQLAlchemy did not recognise (PostgreSQL only)."""
    if conn.dialect.name != "postgresql":
        return {}
    unknown = [
        name
        for name, r in raw.items()
        if isinstance(r, RawTable) and any(isinstance(c["type"], NullType) for c in r.columns)
    ]
    if not unknown:
        return {}
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
            "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = ANY(:names) "
            "AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        {"schema": schema or sa.inspect(conn).default_schema_name, "names": unknown},
    )
    return {(table, column): spec for table, column, spec in rows}


def _build(
    dialect: Dialect,
    schema: str | None,
    name: str,
    kind: TableType,
    raw: RawTable,
    definition: str | None,
    raw_types: dict[tuple[str, str], str],
) -> ReflectedTable:
    for col in raw.columns:
        if isinstance(col["type"], NullType):
            col["type"] = _RawType(raw_types.get((name, col["name"]), ""))
    pk_cols = list((raw.pk or {}).get("constrained_columns") or [])
    fk_of = _foreign_keys_by_column(dialect, schema, raw.fks)
    type_names = [compiled_type(col["type"], dialect) for col in raw.columns]
    columns = [
        described_column(
            col["name"],
            type_name if type_name is not None else type(col["type"]).__name__.upper(),
            col.get("nullable", True),
            pk_cols,
            fk_of.get(col["name"]),
        )
        for col, type_name in zip(raw.columns, type_names, strict=True)
    ]
    if kind == TableType.TABLE:
        ddl = table_ddl(dialect, schema, name, raw, type_names)
    elif definition:
        ddl = view_ddl(dialect, schema, name, kind, definition)
    else:
        raise TableNotFound(f"the definition of view {name!r} cannot be read")
    # SQLite columns may have no declared type at all (often in views): judged by their values.
    untyped_ok = dialect.name == "sqlite"
    categorical = [
        col["name"]
        for col in raw.columns
        if pk_cols != [col["name"]]
        and (
            is_categorical_type(col["type"])
            or (untyped_ok and isinstance(col["type"], _RawType) and not col["type"].spec)
        )
    ]
    return ReflectedTable(columns=columns, ddl=ddl, categorical=categorical)


def _foreign_keys_by_column(
    dialect: Dialect, schema: str | None, fks: list[dict[str, Any]]
) -> dict[str, ForeignKey]:
    """Per constrained column, the referred column and table (`schema.table` when the referred
    table lives in another schema than this one; None stands for the default schema)."""
    default = dialect.default_schema_name
    found: dict[str, ForeignKey] = {}
    for fk in fks:
        referred_schema = fk.get("referred_schema") or default
        table = fk["referred_table"]
        if referred_schema != (schema or default):
            table = f"{referred_schema}.{table}"
        for local, remote in zip(fk["constrained_columns"], fk["referred_columns"], strict=False):
            found.setdefault(local, ForeignKey(field_name=remote, reference_table=table))
    return found


_LONG_TEXT = re.compile(r"(MEDIUM|LONG)TEXT|CLOB|NTEXT|TSVECTOR|XML", re.IGNORECASE)


def is_categorical_type(type_: Any) -> bool:
    """Could values of this type be a short list of categories? (Not long text, binary,
    JSON, arrays, dates or floats.)"""
    if isinstance(type_, sa.Enum | sa.Boolean):
        return True
    if isinstance(type_, sa.types._Binary | sa.JSON | sa.ARRAY | NullType | _RawType):
        return False
    if isinstance(type_, sa.String):
        if _LONG_TEXT.search(type(type_).__name__):
            return False
        return type_.length is None or type_.length <= 255
    return isinstance(type_, sa.Integer)
