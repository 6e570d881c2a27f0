"""The naive baseline: a refresh and a scan with the shape of Dataherald's engine.

Written for comparison only, on the same store (the same collections and document shape as
tdsync) and the same source databases. What makes it slow is what the issue measures:
- the listing reflects every table's full metadata (`MetaData.reflect`) before asking for names;
- every live table costs a find, then an insert (or an update) of its own: one store round trip
  or two per table, however little changed;
- the scan asks the inspector for each table's columns, runs per-column probes and saves each
  table with its own find-then-update.
The rules it applies are tdsync's (insert NOT_SCANNED, deprecate, restore), so both end with
the same catalogue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from tdsync.domain.models import Status, TableDescription, new_description_doc, utcnow
from tdsync.store import CatalogueStore

MAX_CATEGORIES = 100
EXAMPLE_ROWS = 3


def _engine_and_schemas(store: CatalogueStore, connection_id: str):
    connection = store.get_connection(connection_id)
    engine = sa.create_engine(store.connection_uri(connection_id))  # a plain engine, as theirs
    return engine, connection.schemas or [None]


def refresh(store: CatalogueStore, connection_id: str) -> list[TableDescription]:
    """Refresh one connection the naive way; returns every description, as the API would."""
    engine, schemas = _engine_and_schemas(store, connection_id)
    now = utcnow()
    live: dict[tuple[str, str], str] = {}
    try:
        for schema in schemas:
            metadata = sa.MetaData()
            metadata.reflect(bind=engine, schema=schema, views=True)  # everything, to list names
            inspector = sa.inspect(engine)
            name = schema or inspector.default_schema_name or "main"
            for table in inspector.get_table_names(schema=schema):
                live[(name, table)] = "TABLE"
            for view in inspector.get_view_names(schema=schema):
                live[(name, view)] = "VIEW"
    finally:
        engine.dispose()

    coll = store.descriptions
    for (schema_name, table_name), kind in live.items():
        key = {
            "db_connection_id": connection_id,
            "schema_name": schema_name,
            "table_name": table_name,
        }
        doc = coll.find_one(key)
        if doc is None:
            coll.insert_one(
                new_description_doc(
                    db_connection_id=connection_id,
                    schema_name=schema_name,
                    table_name=table_name,
                    table_type=kind,
                    now=now,
                )
            )
        elif doc["status"] == Status.DEPRECATED:
            coll.update_one(
                {"_id": doc["_id"]},
                {"$set": {"status": Status.NOT_SCANNED.value, "last_refreshed_at": now}},
            )
    for doc in coll.find({"db_connection_id": connection_id}):
        gone = (doc["schema_name"], doc["table_name"]) not in live
        if gone and doc["status"] != Status.DEPRECATED:
            coll.update_one(
                {"_id": doc["_id"]},
                {"$set": {"status": Status.DEPRECATED.value, "last_refreshed_at": now}},
            )
    docs = sorted(
        coll.find({"db_connection_id": connection_id}),
        key=lambda d: (d["schema_name"], d["table_name"]),
    )
    return [TableDescription.from_doc(d) for d in docs]


def scan(store: CatalogueStore, connection_id: str) -> int:
    """Scan every live table of a connection the naive way; returns how many were scanned."""
    engine, schemas = _engine_and_schemas(store, connection_id)
    coll = store.descriptions
    scanned = 0
    try:
        for schema in schemas:
            metadata = sa.MetaData()
            metadata.reflect(bind=engine, schema=schema, views=True)
            inspector = sa.inspect(engine)
            name = schema or inspector.default_schema_name or "main"
            tables = inspector.get_table_names(schema=schema) + inspector.get_view_names(
                schema=schema
            )
            for table_name in tables:
                key = f"{schema}.{table_name}" if schema else table_name
                table = metadata.tables[key]
                doc = _scan_table(engine, inspector, table, schema)
                existing = coll.find_one(
                    {
                        "db_connection_id": connection_id,
                        "schema_name": name,
                        "table_name": table_name,
                    }
                )
                if existing is not None:
                    coll.update_one({"_id": existing["_id"]}, {"$set": doc})
                scanned += 1
    finally:
        engine.dispose()
    return scanned


def _scan_table(
    engine: sa.Engine, inspector: sa.Inspector, table: sa.Table, schema: str | None
) -> dict[str, Any]:
    columns = []
    pk = set(inspector.get_pk_constraint(table.name, schema=schema)["constrained_columns"])
    fks = {
        fk["constrained_columns"][0]: fk
        for fk in inspector.get_foreign_keys(table.name, schema=schema)
    }
    with engine.connect() as conn:
        for column in inspector.get_columns(table.name, schema=schema):
            col = table.c[column["name"]]
            conn.execute(sa.select(col).limit(1)).first()  # their "field size" probe
            values = conn.execute(sa.select(sa.distinct(col)).limit(MAX_CATEGORIES + 1)).all()
            low = 1 < len(values) <= MAX_CATEGORIES
            fk = fks.get(column["name"])
            columns.append(
                {
                    "name": column["name"],
                    "data_type": str(column["type"]),
                    "is_primary_key": column["name"] in pk,
                    "nullable": bool(column.get("nullable", True)),
                    "low_cardinality": low,
                    "categories": [str(v[0]) for v in values] if low else None,
                    "foreign_key": {
                        "field_name": fk["referred_columns"][0],
                        "reference_table": fk["referred_table"],
                    }
                    if fk
                    else None,
                    "description": None,
                }
            )
        rows = conn.execute(sa.select(table).limit(EXAMPLE_ROWS)).mappings().all()
    return {
        "columns": columns,
        "table_schema": str(CreateTable(table).compile(engine)).strip(),
        "examples": [{k: str(v) for k, v in row.items()} for row in rows],
        "status": Status.SCANNED.value,
        "error_message": None,
        "last_schema_sync": datetime.now(UTC),
    }
