"""Sources layer: DuckDB's tables read from its own catalogue functions, which also keep each
object's DDL (DuckDB's SQLAlchemy dialect cannot reflect keys)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tdsync.domain.models import ForeignKey, TableType
from tdsync.sources.reflected import ReflectedTable, described_column, table_gone

_DUCKDB_CATEGORICAL = re.compile(
    r"^(VARCHAR|BOOLEAN|ENUM\(.*\)|U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?)$", re.IGNORECASE
)


def reflect_duckdb(
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
            out[name] = table_gone(name)
            continue
        pk = pks.get(name, [])
        out[name] = ReflectedTable(
            columns=[
                described_column(column, data_type, nullable, pk, fks.get(name, {}).get(column))
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
