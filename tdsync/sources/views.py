"""Sources layer: the definitions of views, as the database keeps them."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tdsync.domain.models import TableType
from tdsync.sources.reflected import REFLECTION_ERRORS, end_transaction

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


def view_definitions(
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
