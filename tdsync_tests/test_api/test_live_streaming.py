"""Streamed lists (issue 18): the same bytes as before, pages, errors before and after the first
byte."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import httpx
import pymongo.errors
import pytest
import uvicorn
from bson import ObjectId
from pydantic import TypeAdapter

from tdsync.api.app import create_app
from tdsync.config.settings import Settings
from tdsync.domain.models import MASK, TableDescription
from tdsync.store import CatalogueStore
from tdsync_tests.test_api.live import free_port, unique

DESCRIPTIONS = "/api/v1/table-descriptions"
AS_BEFORE = TypeAdapter(list[TableDescription])


@pytest.fixture
def connection(api: httpx.Client, api_store: CatalogueStore, make_sqlite) -> str:
    """A refreshed connection of five tables, one of them scanned with unicode, a masked
    example and a drift history."""
    path = make_sqlite(
        *(f'CREATE TABLE "{name}" (id INTEGER PRIMARY KEY)' for name in ("b", "a", "Ä", "c", "d"))
    )
    created = api.post(
        "/api/v1/database-connections",
        json={"alias": unique("stream"), "connection_uri": f"sqlite:///{path}"},
    )
    connection_id = created.json()["id"]
    api_store.descriptions.update_one(
        {"db_connection_id": connection_id, "table_name": "Ä"},
        {
            "$set": {
                "status": "SCANNED",
                "description": 'Größe — ✓ "quoted" \\ 𝔘',
                "columns": [{"name": "id", "data_type": "INTEGER", "is_primary_key": True}],
                "examples": [{"id": 1, "password": MASK, "ratio": 1e16}],
                "metadata": {"z": None, "a": [0.1]},
                "schema_changes": [{"detected_at": ObjectId().generation_time, "added": ["id"]}],
            }
        },
    )
    return connection_id


def stored_as_before(store: CatalogueStore, connection_id: str) -> bytes:
    return AS_BEFORE.dump_json(store.list_descriptions(connection_id))


@pytest.mark.parametrize("prefix", ["/api/v1", "/api"])
def test_lists_stream_the_same_bytes_as_the_response_model(
    api: httpx.Client, api_store: CatalogueStore, connection: str, prefix: str
):
    listed = api.get(f"{prefix}/table-descriptions", params={"db_connection_id": connection})
    listed_before = stored_as_before(api_store, connection)
    refreshed = api.post(
        f"{prefix}/table-descriptions/refresh", json={"db_connection_id": connection}
    )

    assert listed.status_code == 200 and refreshed.status_code == 201
    assert listed.headers["content-type"] == "application/json"
    assert listed.headers.get("transfer-encoding") == "chunked"  # streamed, no Content-Length
    assert listed.content == listed_before
    # (the refresh dates every row it saw anew)
    assert refreshed.content == stored_as_before(api_store, connection)
    assert [d["table_name"] for d in listed.json()] == ["a", "b", "c", "d", "Ä"]


def test_pages_follow_ids_and_add_up_to_the_whole_list(api: httpx.Client, connection: str):
    whole = api.get(DESCRIPTIONS, params={"db_connection_id": connection}).json()
    pages, after = [], None
    while True:
        params = {"db_connection_id": connection, "limit": 2, **({"after": after} if after else {})}
        page = api.get(DESCRIPTIONS, params=params).json()
        if not page:
            break
        pages.append(page)
        after = page[-1]["id"]

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [d for p in pages for d in p] == sorted(whole, key=lambda d: d["id"])
    scanned = api.get(
        DESCRIPTIONS, params={"db_connection_id": connection, "status": "SCANNED", "limit": 5}
    ).json()
    assert [d["table_name"] for d in scanned] == ["Ä"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": "nope"}, "after"),
        ({"after": "64fa09446cec0b4ff60d3ae3z"}, "after"),
    ],
)
def test_a_bad_page_is_422_naming_the_parameter(api: httpx.Client, params: dict, field: str):
    response = api.get(
        DESCRIPTIONS, params={"db_connection_id": "64fa09446cec0b4ff60d3ae3", **params}
    )

    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_error"
    assert response.json()["detail"][0]["loc"] == ["query", field]


def test_an_unknown_connection_is_404_before_any_byte_is_streamed(api: httpx.Client):
    response = api.get(
        DESCRIPTIONS, params={"db_connection_id": "64fa09446cec0b4ff60d3ae3", "limit": 10}
    )

    assert response.status_code == 404
    assert response.json()["error_code"] == "database_connection_not_found"


@pytest.fixture
def server(tdsync_env: dict[str, str], settings: Settings) -> Iterator[str]:
    """The app under uvicorn in this process, so its store can be made to fail mid-answer."""
    port = free_port()
    uv = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    with httpx.Client() as client:
        for _ in range(200):
            try:
                client.get(f"http://127.0.0.1:{port}/api/v1/heartbeat", timeout=1)
                break
            except httpx.TransportError:
                threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


def test_a_store_failing_mid_answer_cuts_the_connection_never_a_complete_array(
    server: str, store: CatalogueStore, monkeypatch: pytest.MonkeyPatch, caplog
):
    connection = store.add_connection(alias="big", connection_uri="sqlite:////tmp/none.db")
    real = CatalogueStore.description_docs
    store.descriptions.insert_many(
        [
            {"db_connection_id": connection.id, "schema_name": "main", "table_name": f"t{i:05d}"}
            | {"table_type": "TABLE", "status": "NOT_SCANNED", "description": "x" * 200}
            for i in range(3_000)  # about 1.2 MB: several chunks
        ]
    )

    def failing_after_2000(self, connection_id, **kwargs):
        for n, doc in enumerate(real(self, connection_id, **kwargs)):
            if n == 2_000:
                raise pymongo.errors.AutoReconnect("connection closed by 127.0.0.1:27017")
            yield doc

    monkeypatch.setattr(CatalogueStore, "description_docs", failing_after_2000)
    received = bytearray()
    with (
        caplog.at_level(logging.ERROR),
        httpx.stream(
            "GET", f"{server}{DESCRIPTIONS}", params={"db_connection_id": connection.id}
        ) as response,
    ):
        assert response.status_code == 200  # sent with the first chunk
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            for chunk in response.iter_bytes():
                received += chunk

    assert received.startswith(b"[{") and not received.endswith(b"]")
    with pytest.raises(json.JSONDecodeError):
        json.loads(received)
    cut = [r.getMessage() for r in caplog.records if r.name == "tdsync.api"]
    assert len(cut) == 1 and "[storage_unavailable]" in cut[0] and "were cut after" in cut[0]
    assert "Traceback" not in caplog.text
