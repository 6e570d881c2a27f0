"""The streamed JSON of table descriptions is byte for byte what `list[TableDescription]`
serialized to before (FastAPI's `dump_json` of the route's response model)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from tdsync.domain.description_json import json_array_chunks
from tdsync.domain.models import MASK, Status, TableDescription, TableType
from tdsync.store import CatalogueStore
from tdsync.store.common import described

AS_BEFORE = TypeAdapter(list[TableDescription])  # what FastAPI's response_model serialized with


def encoded_before(docs: list[dict], refreshed: datetime | None) -> bytes:
    """Today's answer for these stored documents: validated, sorted and dated by the store, then
    serialized by pydantic."""
    return AS_BEFORE.dump_json(described(docs, refreshed))


def streamed(docs: list[dict], refreshed: datetime | None, chunk_bytes: int = 300) -> bytes:
    ordered = sorted(docs, key=lambda d: (d["schema_name"], d["table_name"]))
    return b"".join(json_array_chunks(ordered, refreshed, chunk_bytes=chunk_bytes))


# Mongo keeps milliseconds; a whole second has no fraction in isoformat (`…:00+00:00`).
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
text = st.text(max_size=12)  # any unicode: controls, quotes, backslashes, astral characters
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
    | st.just(MASK),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


def optional(key: str, values: st.SearchStrategy) -> st.SearchStrategy[dict]:
    """A field that a stored document may lack (older documents), hold null, or hold a value."""
    return st.one_of(st.just({}), values.map(lambda v: {key: v}))


@st.composite
def columns(draw) -> dict:
    column = {"name": draw(text)}
    for key, values in (
        ("data_type", st.none() | text),
        ("is_primary_key", st.booleans()),
        ("nullable", st.booleans()),
        ("description", st.none() | text),
        ("low_cardinality", st.booleans()),
        ("categories", st.none() | st.lists(text, max_size=3)),
        (
            "foreign_key",
            st.none() | st.builds(lambda f, r: {"field_name": f, "reference_table": r}, text, text),
        ),
    ):
        column.update(draw(optional(key, values)))
    return column


@st.composite
def schema_changes(draw) -> dict:
    change = {"detected_at": draw(moments)}
    for key, values in (
        ("added", st.lists(text, max_size=2)),
        ("removed", st.lists(text, max_size=2)),
        ("type_changed", st.lists(text, max_size=2)),
        ("renamed_from", st.none() | text),
        ("renamed_columns", st.dictionaries(text, text, max_size=2)),
    ):
        change.update(draw(optional(key, values)))
    return change


@st.composite
def stored_documents(draw) -> dict:
    doc = {
        "_id": ObjectId(),
        "db_connection_id": "6b0f19d8ea466e44d5c66b7f",
        "schema_name": draw(text),
        "table_name": draw(text),
        "status": draw(st.sampled_from([s.value for s in Status])),
        "table_type": draw(st.sampled_from([t.value for t in TableType])),
    }
    for key, values in (
        ("description", st.none() | text),
        ("table_schema", st.none() | text),
        ("error_message", st.none() | text),
        ("columns", st.lists(columns(), max_size=3)),
        ("examples", st.lists(st.dictionaries(text, json_values, max_size=3), max_size=2)),
        ("last_schema_sync", st.none() | moments),
        ("last_refreshed_at", st.none() | moments),
        ("created_at", st.none() | moments),
        ("metadata", st.none() | st.dictionaries(text, json_values, max_size=3)),
        ("schema_changes", st.lists(schema_changes(), max_size=2)),
        ("fingerprint", st.none() | text),  # stored, never answered
    ):
        doc.update(draw(optional(key, values)))
    return doc


def unique_names(docs: list[dict]) -> list[dict]:
    # One document per (schema, table), as the unique index keeps them.
    return list({(d["schema_name"], d["table_name"]): d for d in docs}.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.lists(stored_documents(), max_size=6).map(unique_names), refreshed=st.none() | moments
)
def test_streamed_bytes_equal_the_models_serialization(docs: list[dict], refreshed):
    assert streamed(docs, refreshed) == encoded_before(docs, refreshed)


def test_an_empty_list_is_an_empty_array():
    assert streamed([], None) == b"[]" == encoded_before([], None)


def test_documents_read_back_from_the_store_stream_as_before(store: CatalogueStore):
    """Real stored documents (the driver's aware datetimes, BSON round trip), sorted by the
    store: unicode names, masked examples, empty and null fields, drift history, key order."""
    connection = store.add_connection(alias="shop", connection_uri="sqlite:////tmp/none.db")
    now = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)
    base = {"db_connection_id": connection.id, "table_type": "TABLE", "status": "NOT_SCANNED"}
    docs = [
        {**base, "schema_name": "main", "table_name": "orders", "created_at": now},
        {
            **base,
            "schema_name": "main",
            "table_name": 'Zürich "quoted" \\ \n ✓ 𝔘',
            "status": "SCANNED",
            "description": "Bestellungen — ünïcödé",
            "table_schema": 'CREATE TABLE "x" (id INT)',
            "columns": [
                {"name": "id", "data_type": "INTEGER", "is_primary_key": True, "nullable": False},
                {
                    "name": "user_id",
                    "data_type": "INTEGER",
                    "foreign_key": {"field_name": "user_id", "reference_table": "users"},
                    "low_cardinality": True,
                    "categories": ["1", "2"],
                },
            ],
            "examples": [{"id": 1, "password": MASK, "ratio": 0.1, "big": 1e16, "none": None}],
            "metadata": {"z": 1, "a": {"nested": [1.5, "x"]}, "dh_internal": None},
            "last_schema_sync": now.replace(microsecond=0),
            "last_refreshed_at": now - timedelta(days=1),
            "created_at": now,
            "schema_changes": [
                {"detected_at": now, "added": ["b"], "renamed_columns": {"a": "b"}},
                {"detected_at": now, "renamed_from": "old"},
            ],
        },
        {
            **base,
            "schema_name": "Archiv",
            "table_name": "a",
            "status": "DEPRECATED",
            "error_message": None,
            "last_refreshed_at": now,
            "metadata": {},
            "examples": [],
            "columns": [],
        },
        {**base, "schema_name": "main", "table_name": "", "status": "FAILED", "error_message": "x"},
    ]
    store.descriptions.insert_many(docs)
    store.mark_refreshed(connection.id, now + timedelta(hours=1))

    refreshed = store.refreshed_at(connection.id)
    stored = list(store.descriptions.find({"db_connection_id": connection.id}))
    streamed_bytes = b"".join(
        json_array_chunks(store.description_docs(connection.id, batch_size=2), refreshed)
    )

    assert streamed_bytes == encoded_before(stored, refreshed)
    assert b"+00:00" in streamed_bytes and b'Z"' not in streamed_bytes
    # The store sorts as Python did (by code point), and list_descriptions agrees.
    assert AS_BEFORE.dump_json(store.list_descriptions(connection.id)) == streamed_bytes
