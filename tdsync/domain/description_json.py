"""Domain layer: Table descriptions as the API's JSON, written straight from the stored documents.

The API and `tdsync … --json` stream a connection's descriptions as one JSON array while they read
them from the store. The bytes are the ones `TableDescription` (tdsync.domain.models) serializes to
(pydantic's JSON, as FastAPI wrote them before: key order, `+00:00` datetimes, defaults for absent
fields, a connection's refresh time on the rows it saw), built here as plain dicts encoded by
orjson, about twice as fast as validating each document into the model first
(tdsync_tests/test_description_json.py compares the two on generated documents).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import orjson
from pydantic_core import to_jsonable_python

from tdsync.domain.models import Status, TableType, as_utc

# A chunk of the answer: large enough that the per-chunk cost (a thread hop, a socket write) is
# noise, small enough that memory does not grow with the catalogue.
CHUNK_BYTES = 256 * 1024
_DEPRECATED = Status.DEPRECATED.value


def _iso(value: datetime | None) -> str | None:
    # tdsync.domain.models.Datetime: `value.isoformat()` of the aware value.
    return None if value is None else as_utc(value).isoformat()


def _nested(value: Any) -> Any:
    # A value orjson does not write itself inside examples or metadata (it never writes a
    # datetime: OPT_PASSTHROUGH_DATETIME): pydantic's form of it, as `dict[str, Any]` fields get.
    return to_jsonable_python(value)


_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def _column(column: dict[str, Any]) -> dict[str, Any]:
    foreign_key = column.get("foreign_key")
    return {
        "name": column["name"],
        "data_type": column.get("data_type"),
        "is_primary_key": column.get("is_primary_key", False),
        "nullable": column.get("nullable", True),
        "description": column.get("description"),
        "low_cardinality": column.get("low_cardinality", False),
        "categories": column.get("categories"),
        "foreign_key": (
            None
            if foreign_key is None
            else {
                "field_name": foreign_key["field_name"],
                "reference_table": foreign_key["reference_table"],
            }
        ),
    }


def _schema_change(change: dict[str, Any]) -> dict[str, Any]:
    return {
        "detected_at": _iso(change["detected_at"]),
        "added": change.get("added", []),
        "removed": change.get("removed", []),
        "type_changed": change.get("type_changed", []),
        "renamed_from": change.get("renamed_from"),
        "renamed_columns": change.get("renamed_columns", {}),
    }


def description_dict(doc: dict[str, Any], connection_refreshed: datetime | None) -> dict[str, Any]:
    """A stored document as the API returns it (`TableDescription.from_doc(doc)` dumped as JSON,
    its `last_refreshed_at` derived as tdsync.store.common.with_refresh_time does)."""
    status = doc.get("status", Status.NOT_SCANNED.value)
    refreshed = doc.get("last_refreshed_at")
    if (
        status != _DEPRECATED
        and connection_refreshed is not None
        and (refreshed is None or connection_refreshed > as_utc(refreshed))
    ):
        refreshed = connection_refreshed
    return {
        "id": str(doc["_id"]),
        "db_connection_id": doc["db_connection_id"],
        "schema_name": doc["schema_name"],
        "table_name": doc["table_name"],
        "table_type": doc.get("table_type", TableType.TABLE.value),
        "description": doc.get("description"),
        "table_schema": doc.get("table_schema"),
        "status": status,
        "error_message": doc.get("error_message"),
        "columns": [_column(c) for c in doc.get("columns") or ()],
        "examples": doc.get("examples", []),
        "last_schema_sync": _iso(doc.get("last_schema_sync")),
        "last_refreshed_at": _iso(refreshed),
        "created_at": _iso(doc.get("created_at")),
        "metadata": doc.get("metadata"),
        "schema_changes": [_schema_change(c) for c in doc.get("schema_changes") or ()],
    }


def description_json(doc: dict[str, Any], connection_refreshed: datetime | None) -> bytes:
    """One description's JSON bytes."""
    return orjson.dumps(description_dict(doc, connection_refreshed), _nested, _OPTIONS)


def json_array_chunks(
    docs: Iterable[dict[str, Any]],
    connection_refreshed: datetime | None,
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[bytes]:
    """The descriptions as one JSON array, in chunks of about `chunk_bytes`, written as `docs`
    is read. The closing `]` comes only after the last document: an answer cut short is never
    valid JSON."""
    parts: list[bytes] = [b"["]
    size = 1
    first = True
    for doc in docs:
        item = description_json(doc, connection_refreshed)
        if not first:
            parts.append(b",")
        first = False
        parts.append(item)
        size += len(item) + 1
        if size >= chunk_bytes:
            yield b"".join(parts)
            parts, size = [], 0
    parts.append(b"]")
    yield b"".join(parts)
