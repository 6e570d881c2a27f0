"""Table structure: columns, keys and DDL of many tables in a few queries.

SQLAlchemy's batch reflection (`get_multi_columns`, `get_multi_pk_constraint`,
`get_multi_foreign_keys`) reads a whole chunk of a schema at once where the dialect implements it
(PostgreSQL); elsewhere SQLAlchemy loops per table itself. A batch that fails is retried table by
table, so one unreadable table fails alone. DuckDB's SQLAlchemy dialect cannot reflect keys, so
DuckDB is read from its own catalogue functions, which also keep each object's DDL.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.engine.reflection import ObjectKind
from sqlalchemy.schema import CreateTable
from sqlalchemy.types import NullType

from tdsync.domain.models import ColumnDescription, ForeignKey, TableType

REFLECTION_ERRORS = (sa.exc.DBAPIError, sa.exc.SQLAlchemyError, NotImplementedError)


class TableNotFound(LookupError):
    """The table or view is no longer in the source database."""


def _gone(name: str) -> TableNotFound:
    return TableNotFound(f"{name!r} is not in the source database any more")


def _described_column(
    name: str, data_type: str, nullable: Any, pk: list[str], fk: ForeignKey | None
) -> ColumnDescription:
    # A key column is never nullable, whatever the driver reports.
    return ColumnDescription(
        name=name,
        data_type=data_type,
        is_primary_key=name in pk,
        nullable=bool(nullable) and name not in pk,
        foreign_key=fk,
    )


def _kept_default(default: Any) -> bool:
    # A sequence default names an object a fresh database lacks; an autoincrement key
    # renders as SERIAL / AUTO_INCREMENT without it.
    return default is not None and "nextval(" not in str(default)


@dataclass
class ReflectedTable:
    columns: list[ColumnDescription]
    ddl: str
    categorical: list[str] = field(default_factory=list)  # columns worth a cardinality probe
    fingerprint: str | None = None  # of the structure reflected (tdsync.sources.fingerprints)


@dataclass
class _Raw:
    columns: list[dict[str, Any]]
    pk: dict[str, Any] | None = None
    fks: list[dict[str, Any]] = field(default_factory=list)
    uniques: list[dict[str, Any]] = field(default_factory=list)


def reflect_tables(
    conn: Connection, schema: str | None, tables: dict[str, TableType]
) -> dict[str, ReflectedTable | Exception]:
    """Structure of the named tables and views of one schema (None: the default schema)."""
    if conn.dialect.name == "duckdb":
        try:
            return _reflect_duckdb(conn, schema, tables)
        except REFLECTION_ERRORS as exc:
            end_transaction(conn)
            return dict.fromkeys(tables, exc)
    names = list(tables)
    try:
        raw: dict[str, _Raw | Exception] = dict(_batch(conn, schema, names))
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
        _undo_doubled_percents(conn.dialect, raw, views)
    try:
        definitions = _view_definitions(conn, schema, views)
        raw_types = _raw_types(conn, schema, raw)
    except REFLECTION_ERRORS:  # such a view fails alone below, without its definition
        end_transaction(conn)
        definitions, raw_types = {}, {}

    out: dict[str, ReflectedTable | Exception] = {}
    display = display_dialect(conn.dialect)
    for name, kind in tables.items():
        found = raw.get(name)
        if found is None:
            out[name] = _gone(name)
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


def _batch(conn: Connection, schema: str | None, names: list[str]) -> dict[str, _Raw]:
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
        name: _Raw(cols, pks.get(key), fks.get(key) or [], uniques.get(key) or [])
        for key, cols in columns.items()
        for name in [key[1]]
    }


def _undo_doubled_percents(
    dialect: Dialect, raw: dict[str, _Raw | Exception], views: dict[str, TableType]
) -> None:
    """SQLAlchemy 2.0 reflects a MySQL/MariaDB view by rewriting its DESCRIBE output as a
    CREATE TABLE, quoting each column name for the driver (every `%` doubled), and parses that
    back without undoing it: view column `%s` comes back as `%%s`. Every `%` of such a name
    was doubled, so halving them is exact."""
    if not getattr(dialect.identifier_preparer, "_double_percents", False):
        return
    for name in views:
        found = raw.get(name)
        if isinstance(found, _Raw):
            for column in found.columns:
                column["name"] = column["name"].replace("%%", "%")


def display_dialect(dialect: Dialect) -> Dialect:
    """The dialect for DDL and type names that people read and run.

    With a driver whose parameters are `%s` / `%(name)s` (psycopg2, pymysql) SQLAlchemy doubles
    every `%` it renders, names and literals alike, for the driver to undo: table `50%` would be
    stored as `CREATE TABLE "50%%"`. This copy renders them as the database spells them.
    """
    preparer = dialect.identifier_preparer
    if not getattr(preparer, "_double_percents", False):
        return dialect
    display = copy.copy(dialect)
    display.identifier_preparer = copy.copy(preparer)
    display.identifier_preparer.dialect = display
    display.identifier_preparer._double_percents = False
    display.identifier_preparer._strings = {}  # its memo of quoted names holds doubled ones
    display.type_compiler_instance = type(dialect.type_compiler_instance)(display)
    return display


def end_transaction(conn: Connection) -> None:
    """End the snapshot and free catalogue locks; after an error PostgreSQL refuses every
    statement until the transaction ends."""
    if conn.in_transaction():
        conn.rollback()


# -- views -------------------------------------------------------------------------------------

_PG_VIEWS = sa.text(
    "SELECT c.relname, pg_get_viewdef(c.oid, true) FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = :schema AND c.relkind IN ('v', 'm') AND c.relname = ANY(:names)"
)
_MYSQL_VIEW_PREFIX = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:ALGORITHM\s*=\s*\w+\s+)?(?:DEFINER\s*=\s*(?:`(?:[^`]|``)*`|\S+?)@(?:`(?:[^`]|``)*`|\S+)\s+)?"
    r"(?:SQL\s+SECURITY\s+\w+\s+)?VIEW\s+(?:`(?:[^`]|``)*`\.)?`(?:[^`]|``)*`\s+AS\s+",
    re.IGNORECASE,
)


def _view_definitions(
    conn: Connection, schema: str | None, views: dict[str, TableType]
) -> dict[str, str]:
    if not views:
        return {}
    insp = sa.inspect(conn)
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            _PG_VIEWS, {"schema": schema or insp.default_schema_name, "names": list(views)}
        )
        return {name: definition for name, definition in rows if definition}
    found = {}
    for name in views:
        try:
            found[name] = insp.get_view_definition(name, schema=schema)
        except REFLECTION_ERRORS:
            end_transaction(conn)
    if conn.dialect.name in ("mysql", "mariadb"):
        database = schema or insp.default_schema_name
        found = {n: _mysql_view_body(d, database) for n, d in found.items() if d}
    return {n: d for n, d in found.items() if d}


def _mysql_view_body(definition: str, database: str) -> str:
    """SHOW CREATE VIEW without its DEFINER (a user the target may lack) and without the
    database name it prefixes every table with, so the DDL runs in any database."""
    match = _MYSQL_VIEW_PREFIX.match(definition)
    if match:
        definition = definition[match.end() :]
    return definition.replace(f"`{database}`.", "")


def _view_ddl(
    dialect: Dialect, schema: str | None, name: str, kind: TableType, definition: str
) -> str:
    definition = definition.strip().rstrip(";").strip()
    if definition[:6].upper() == "CREATE":
        return definition  # SQLite keeps the statement it was created with
    what = "MATERIALIZED VIEW" if kind == TableType.MATERIALIZED_VIEW else "VIEW"
    return f"CREATE {what} {_qualified(dialect, schema, name)} AS {definition}"


# -- DDL and columns -------------------------------------------------------------------------


class _RawType(sa.types.UserDefinedType):
    """A type SQLAlchemy does not know, rendered as the database spells it."""

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **kw: Any) -> str:
        return self.spec


def _raw_types(
    conn: Connection, schema: str | None, raw: dict[str, _Raw | Exception]
) -> dict[tuple[str, str], str]:
    """The database's own names of types SQLAlchemy did not recognise (PostgreSQL only)."""
    if conn.dialect.name != "postgresql":
        return {}
    unknown = [
        name
        for name, r in raw.items()
        if isinstance(r, _Raw) and any(isinstance(c["type"], NullType) for c in r.columns)
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
    raw: _Raw,
    definition: str | None,
    raw_types: dict[tuple[str, str], str],
) -> ReflectedTable:
    for col in raw.columns:
        if isinstance(col["type"], NullType):
            col["type"] = _RawType(raw_types.get((name, col["name"]), ""))
    pk_cols = list((raw.pk or {}).get("constrained_columns") or [])
    fk_of = _foreign_keys_by_column(dialect, schema, raw.fks)
    type_names = [_compiled_type(col["type"], dialect) for col in raw.columns]
    columns = [
        _described_column(
            col["name"],
            type_name if type_name is not None else type(col["type"]).__name__.upper(),
            col.get("nullable", True),
            pk_cols,
            fk_of.get(col["name"]),
        )
        for col, type_name in zip(raw.columns, type_names, strict=True)
    ]
    if kind == TableType.TABLE:
        ddl = _table_ddl(dialect, schema, name, raw, type_names)
    elif definition:
        ddl = _view_ddl(dialect, schema, name, kind, definition)
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


def _table_ddl(
    dialect: Dialect, schema: str | None, name: str, raw: _Raw, type_names: list[str | None]
) -> str:
    """CREATE TABLE of a reflected table; `type_names` are its columns' compiled types."""
    if dialect.name == "postgresql":
        try:
            fast = _plain_pg_table_ddl(dialect, schema, name, raw, type_names)
        except Exception:  # the general path below renders it, or raises its own error
            fast = None
        if fast is not None:
            return fast
    return _compiled_table_ddl(dialect, schema, name, raw)


# Column keys the plain PostgreSQL rendering handles; any other (computed, identity, dialect
# options) takes the general path.
_PLAIN_COLUMN_KEYS = frozenset({"name", "type", "nullable", "default", "autoincrement", "comment"})


def _plain_pg_table_ddl(
    dialect: Dialect, schema: str | None, name: str, raw: _Raw, type_names: list[str | None]
) -> str | None:
    """CREATE TABLE of a plain PostgreSQL table, rendered straight from the reflected dicts with
    the dialect's own preparer and type compiler: the very text `_compiled_table_ddl` gives, at a
    fraction of the cost (building and compiling SQLAlchemy Table objects was ~0.7 ms a table, a
    third of a metadata-only scan). None for anything beyond plain columns, key and unique
    constraints (serial or identity columns, defaults, enums, constraint options): those take the
    general path."""
    preparer = dialect.identifier_preparer
    quote = preparer.quote
    lines = []
    for col, type_name in zip(raw.columns, type_names, strict=True):
        type_ = col["type"]
        if (
            type_name is None
            or not _PLAIN_COLUMN_KEYS.issuperset(col)
            or col.get("autoincrement") is not False
            or not isinstance(col.get("nullable"), bool)
            or _kept_default(col.get("default"))
            or (isinstance(type_, sa.types.SchemaType) and not _plain_boolean(type_))
        ):
            return None
        spec = f"{quote(col['name'])} {type_name}"
        lines.append(spec if col["nullable"] else f"{spec} NOT NULL")
    constraints = []
    pk = raw.pk or {}
    if pk.get("constrained_columns"):
        constraints.append(
            _constraint_name(preparer, pk.get("name"))
            + f"PRIMARY KEY ({', '.join(quote(c) for c in pk['constrained_columns'])})"
        )
    for fk in raw.fks:
        if any(v is not None for v in (fk.get("options") or {}).values()):
            return None
        constraints.append(
            _constraint_name(preparer, fk.get("name"))
            + f"FOREIGN KEY({', '.join(quote(c) for c in fk['constrained_columns'])}) "
            f"REFERENCES {_qualified(dialect, fk.get('referred_schema'), fk['referred_table'])} "
            f"({', '.join(quote(c) for c in fk['referred_columns'])})"
        )
    for unique in raw.uniques:
        if unique.get("duplicates_index"):
            continue
        if any((unique.get("dialect_options") or {}).values()) or not unique["column_names"]:
            return None
        constraints.append(
            _constraint_name(preparer, unique.get("name"))
            + f"UNIQUE ({', '.join(quote(c) for c in unique['column_names'])})"
        )
    body = ", \n\t".join(lines + constraints)
    return f"CREATE TABLE {_qualified(dialect, schema, name)} (\n\t{body}\n)"


def _plain_boolean(type_: Any) -> bool:
    # A Boolean renders a CHECK constraint only when asked to; a reflected one never is.
    return isinstance(type_, sa.Boolean) and not type_.create_constraint


def _constraint_name(preparer: Any, name: str | None) -> str:
    if name is None:
        return ""
    return f"CONSTRAINT {preparer.truncate_and_render_constraint_name(name)} "


def _compiled_table_ddl(dialect: Dialect, schema: str | None, name: str, raw: _Raw) -> str:
    metadata = sa.MetaData()
    table = sa.Table(name, metadata, *(_column(c) for c in raw.columns), schema=schema)
    if raw.pk and raw.pk.get("constrained_columns"):
        table.append_constraint(
            sa.PrimaryKeyConstraint(*raw.pk["constrained_columns"], name=raw.pk.get("name"))
        )
    stubs: dict[tuple[str | None, str], sa.Table] = {}
    for fk in raw.fks:
        key = (fk.get("referred_schema"), fk["referred_table"])
        if key == (schema, name):
            remote = table
        else:
            # A stand-in for the referred table: DDL needs only its name and column names.
            remote = stubs.get(key)
            if remote is None:
                remote = stubs[key] = sa.Table(key[1], metadata, schema=key[0])
            for column in fk["referred_columns"]:
                if column not in remote.c:
                    remote.append_column(sa.Column(column, NullType()))
        table.append_constraint(
            sa.ForeignKeyConstraint(
                fk["constrained_columns"],
                [remote.c[c] for c in fk["referred_columns"]],
                name=fk.get("name"),
                **{k: v for k, v in (fk.get("options") or {}).items() if v is not None},
            )
        )
    for unique in raw.uniques:
        if unique.get("duplicates_index"):
            continue
        table.append_constraint(
            sa.UniqueConstraint(
                *unique["column_names"],
                name=unique.get("name"),
                **(unique.get("dialect_options") or {}),
            )
        )
    return str(CreateTable(table).compile(dialect=dialect)).strip()


def _column(col: dict[str, Any]) -> sa.Column:
    args: list[Any] = []
    default = col.get("default")
    if _kept_default(default):
        args.append(sa.DefaultClause(sa.text(default) if isinstance(default, str) else default))
    if col.get("computed"):
        args.append(sa.Computed(**col["computed"]))
    if col.get("identity"):
        args.append(sa.Identity(**col["identity"]))
    kwargs = {k: col[k] for k in ("nullable", "autoincrement", "comment") if k in col}
    kwargs.update(col.get("dialect_options") or {})
    return sa.Column(col["name"], col["type"], *args, **kwargs)


def _compiled_type(type_: Any, dialect: Dialect) -> str | None:
    """The type as the dialect renders it in DDL; None when it cannot render it."""
    try:
        return str(type_.compile(dialect=dialect))
    except Exception:
        return None


def _qualified(dialect: Dialect, schema: str | None, name: str) -> str:
    return dialect.identifier_preparer.format_table(sa.table(name, schema=schema))


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


# -- DuckDB ------------------------------------------------------------------------------------

_DUCKDB_CATEGORICAL = re.compile(
    r"^(VARCHAR|BOOLEAN|ENUM\(.*\)|U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?)$", re.IGNORECASE
)


def _reflect_duckdb(
    conn: Connection, schema: str | None, tables: dict[str, TableType]
) -> dict[str, ReflectedTable | Exception]:
    schema_name = schema or conn.dialect.default_schema_name
    where = "database_name = current_database() AND schema_name = :schema"
    params = {"schema": schema_name}
    columns: dict[str, list[tuple]] = {}
    for table, column, data_type, nullable in conn.execute(
        sa.text(
            "SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns() "
            f"WHERE {where} ORDER BY table_name, column_index"
        ).bindparams(**params)
    ):
        columns.setdefault(table, []).append((column, data_type, nullable))
    pks: dict[str, list[str]] = {}
    fks: dict[str, dict[str, ForeignKey]] = {}
    for table, kind, cols, referred, referred_cols in conn.execute(
        sa.text(
            "SELECT table_name, constraint_type, constraint_column_names, referenced_table, "
            f"referenced_column_names FROM duckdb_constraints() WHERE {where} "
            "AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')"
        ).bindparams(**params)
    ):
        if kind == "PRIMARY KEY":
            pks[table] = list(cols)
        else:
            for local, remote in zip(cols, referred_cols, strict=False):
                fks.setdefault(table, {}).setdefault(
                    local, ForeignKey(field_name=remote, reference_table=referred)
                )
    ddl = {
        name: sql
        for name, sql in conn.execute(
            sa.text(
                f"SELECT table_name, sql FROM duckdb_tables() WHERE {where} "
                f"UNION ALL SELECT view_name, sql FROM duckdb_views() WHERE {where} "
                "AND NOT internal"
            ).bindparams(**params)
        )
    }
    out: dict[str, ReflectedTable | Exception] = {}
    for name in tables:
        if name not in columns or not ddl.get(name):
            out[name] = _gone(name)
            continue
        pk = pks.get(name, [])
        out[name] = ReflectedTable(
            columns=[
                _described_column(column, data_type, nullable, pk, fks.get(name, {}).get(column))
                for column, data_type, nullable in columns[name]
            ],
            ddl=ddl[name].strip(),
            categorical=[
                column
                for column, data_type, _ in columns[name]
                if _DUCKDB_CATEGORICAL.match(data_type) and pk != [column]
            ],
        )
    return out
