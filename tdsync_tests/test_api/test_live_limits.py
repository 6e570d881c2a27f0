"""What a request may hold, against a real `tdsync api` process: size caps on people's text,
strict JSON bodies, and aliases normalised before the uniqueness check."""

from __future__ import annotations

import json

import httpx
import pytest
from bson import ObjectId

from tdsync.api.body_limit import MAX_BODY_BYTES
from tdsync.domain.limits import (
    DOCUMENT_MAX_BYTES,
    METADATA_MAX_BYTES,
    PEOPLES_TEXT_MAX_BYTES,
    TEXT_MAX_CHARS,
)
from tdsync.store import CatalogueStore
from tdsync_tests.test_api.live import unique

CONNECTIONS = "/api/v1/database-connections"
DESCRIPTIONS = "/api/v1/table-descriptions"
JSON = {"content-type": "application/json"}
WIDE = "\U0001f600"  # 4 bytes of UTF-8 per character


@pytest.fixture
def connection(api: httpx.Client, make_sqlite) -> dict:
    path = make_sqlite("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    created = api.post(
        CONNECTIONS, json={"alias": unique("limits"), "connection_uri": f"sqlite:///{path}"}
    )
    assert created.status_code == 201, created.text
    yield created.json()
    api.delete(f"{CONNECTIONS}/{created.json()['id']}")


@pytest.fixture
def wide_table(api: httpx.Client, api_store: CatalogueStore, connection: dict) -> dict:
    """The `orders` description, as a scan of a 40-column table would leave it."""
    refreshed = api.post(f"{DESCRIPTIONS}/refresh", json={"db_connection_id": connection["id"]})
    assert refreshed.status_code == 201, refreshed.text
    description = refreshed.json()[0]
    columns = [
        {"name": f"c{i}", "data_type": "TEXT", "is_primary_key": False, "nullable": True}
        for i in range(40)
    ]
    api_store.descriptions.update_one(
        {"_id": ObjectId(description["id"])}, {"$set": {"status": "SCANNED", "columns": columns}}
    )
    return description


def assert_422(response: httpx.Response) -> dict:
    assert response.status_code == 422, response.text[:500]
    body = response.json()
    assert body["error_code"] == "validation_error"
    assert body["message"]
    return body


# -- size caps ----------------------------------------------------------------------------------


def test_a_description_over_its_cap_is_422_naming_the_field(api: httpx.Client, wide_table: dict):
    url = f"{DESCRIPTIONS}/{wide_table['id']}"

    table = assert_422(api.put(url, json={"description": "x" * (TEXT_MAX_CHARS + 1)}))
    column = assert_422(
        api.put(url, json={"columns": [{"name": "c3", "description": "x" * (TEXT_MAX_CHARS + 1)}]})
    )
    at_the_cap = api.put(url, json={"description": "x" * TEXT_MAX_CHARS})

    assert table["detail"][0]["loc"] == ["body", "description"]
    # (pydantic names the union member too: body.columns.list[ColumnUpdate].0.description)
    loc = column["detail"][0]["loc"]
    assert (loc[:2], loc[-2:]) == (["body", "columns"], ["0", "description"])
    assert at_the_cap.status_code == 200, at_the_cap.text[:300]


@pytest.mark.parametrize("size", [16_700_000, 17_000_000])
def test_the_testers_16_7_mb_description_is_refused_and_nothing_changes(
    api: httpx.Client, wide_table: dict, size: int
):
    url = f"{DESCRIPTIONS}/{wide_table['id']}"
    assert api.put(url, json={"description": "kept"}).status_code == 200

    response = api.put(url, json={"description": "x" * size})

    if size < MAX_BODY_BYTES:  # the body is read, the field is over its cap
        assert assert_422(response)["detail"][0]["loc"] == ["body", "description"]
    else:  # refused before the body is read
        assert (response.status_code, response.json()["error_code"]) == (413, "request_too_large")
    assert api.get(url).json()["description"] == "kept"


def test_edits_that_together_pass_the_description_cap_are_422_and_change_nothing(
    api: httpx.Client, wide_table: dict
):
    url = f"{DESCRIPTIONS}/{wide_table['id']}"
    # Each edit is within every per-field cap; ten columns of 256 KiB each are 2.5 MiB.
    long_text = WIDE * TEXT_MAX_CHARS

    def describe(columns: range) -> httpx.Response:
        return api.put(
            url, json={"columns": [{"name": f"c{i}", "description": long_text} for i in columns]}
        )

    first = describe(range(0, 10))
    second = describe(range(10, 20))  # 5 MiB in all: over the cap

    assert first.status_code == 200, first.text[:300]
    body = assert_422(second)
    assert body["detail"]["field"] == "columns.c10.description"
    assert body["detail"]["max_bytes"] == PEOPLES_TEXT_MAX_BYTES
    assert body["detail"]["bytes"] > PEOPLES_TEXT_MAX_BYTES
    stored = {c["name"]: c["description"] for c in api.get(url).json()["columns"]}
    assert [name for name, text in stored.items() if text] == [f"c{i}" for i in range(10)]


def test_an_edit_of_a_description_already_near_the_document_cap_is_422(
    api: httpx.Client, api_store: CatalogueStore, wide_table: dict
):
    # Whatever a scan stored (here 12 MiB of sample rows), people's edits cannot push the
    # document towards MongoDB's 16 MiB, where the next scan's write would fail.
    examples = [{"blob": "x" * (1 << 20)} for _ in range(12)]
    api_store.descriptions.update_one(
        {"_id": ObjectId(wide_table["id"])}, {"$set": {"examples": examples}}
    )
    url = f"{DESCRIPTIONS}/{wide_table['id']}"

    body = assert_422(api.put(url, json={"description": "a few words"}))

    assert body["detail"]["field"] == "description"
    assert body["detail"]["max_bytes"] == DOCUMENT_MAX_BYTES
    assert (
        api_store.descriptions.find_one({"_id": ObjectId(wide_table["id"])})["description"] is None
    )


@pytest.mark.parametrize("where", ["connection", "description"])
def test_metadata_over_256_kib_is_422_naming_the_field(
    api: httpx.Client, connection: dict, wide_table: dict, where: str
):
    metadata = {"notes": "x" * METADATA_MAX_BYTES}
    url = (
        f"{CONNECTIONS}/{connection['id']}"
        if where == "connection"
        else f"{DESCRIPTIONS}/{wide_table['id']}"
    )

    body = assert_422(api.put(url, json={"metadata": metadata}))

    assert body["detail"][0]["loc"] == ["body", "metadata"]
    assert "256" in body["message"] or f"{METADATA_MAX_BYTES:,}" in body["message"]


# -- malformed JSON -------------------------------------------------------------------------------


MALFORMED = {
    "not JSON": b'{"description": ',
    "1,000-deep": b'{"metadata": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1000 + b"}",
    "33-deep": b'{"metadata": ' + b"[" * 32 + b"1" + b"]" * 32 + b"}",
    "invalid UTF-8": b'{"description": "caf\xe9"}',
    "NaN": b'{"metadata": {"ratio": NaN}}',
    "Infinity": b'{"metadata": {"ratio": Infinity}}',
    "-Infinity": b'{"metadata": {"ratio": -Infinity}}',
    "1e999": b'{"metadata": {"ratio": 1e999}}',
    "a lone surrogate": b'{"description": "\\ud800"}',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("route", ["connections", "descriptions", "sync-schemas"])
def test_a_malformed_json_body_is_422_validation_error(api: httpx.Client, route: str, body: bytes):
    method, url = {
        "connections": ("POST", CONNECTIONS),
        "descriptions": ("PUT", f"{DESCRIPTIONS}/64fa09446cec0b4ff60d3ae3"),
        "sync-schemas": ("POST", f"{DESCRIPTIONS}/sync-schemas"),
    }[route]

    response = api.request(method, url, content=body, headers=JSON)

    problem = assert_422(response)["detail"][0]
    assert (problem["loc"], problem["type"]) == (["body"], "json_invalid")


def test_a_32_deep_body_and_finite_numbers_are_accepted(api: httpx.Client, wide_table: dict):
    metadata = {"ratio": 1.5e300, "deep": json.loads("[" * 30 + "1" + "]" * 30)}

    response = api.put(f"{DESCRIPTIONS}/{wide_table['id']}", json={"metadata": metadata})

    assert response.status_code == 200, response.text[:300]
    assert response.json()["metadata"] == metadata


# -- aliases --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "look_alike",
    [
        " {alias} ",  # spaces around it
        "{alias}\u3000",  # an ideographic space
        "{alias_fullwidth}",  # ｓｈｏｐ_…: full-width letters
        "{alias_decomposed}",  # é as e + a combining accent
    ],
)
def test_an_alias_that_only_looks_different_is_409_duplicate_alias(
    api: httpx.Client, make_sqlite, look_alike: str
):
    uri = f"sqlite:///{make_sqlite('CREATE TABLE t (id INT)')}"
    alias = unique("café")
    variants = {
        "alias": alias,
        "alias_fullwidth": "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in alias),
        "alias_decomposed": alias.replace("é", "e\u0301"),
    }
    created = api.post(CONNECTIONS, json={"alias": alias, "connection_uri": uri})
    assert created.status_code == 201, created.text

    again = api.post(
        CONNECTIONS, json={"alias": look_alike.format(**variants), "connection_uri": uri}
    )

    assert (again.status_code, again.json()["error_code"]) == (409, "duplicate_alias")
    api.delete(f"{CONNECTIONS}/{created.json()['id']}")


def test_an_alias_is_stored_normalised_and_found_by_its_look_alikes(
    api: httpx.Client, api_store: CatalogueStore, make_sqlite
):
    uri = f"sqlite:///{make_sqlite('CREATE TABLE t (id INT)')}"
    alias = unique("cafe\u0301")

    created = api.post(CONNECTIONS, json={"alias": f"  {alias}\t", "connection_uri": uri})

    assert created.status_code == 201, created.text
    stored = alias.replace("e\u0301", "é")
    assert created.json()["alias"] == stored
    assert api_store.connections.find_one({"alias": stored}) is not None
    assert api_store.get_connection(f" {alias} ").id == created.json()["id"]
    api.delete(f"{CONNECTIONS}/{created.json()['id']}")


@pytest.mark.parametrize(
    "alias", ["sh\x00op", "shop\x07", "sh\nop", "shop\u200b", "\u202eshop", "   ", "\u3000"]
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_an_alias_with_control_or_invisible_characters_is_422(
    api: httpx.Client, connection: dict, method: str, alias: str
):
    url = CONNECTIONS if method == "POST" else f"{CONNECTIONS}/{connection['id']}"

    body = assert_422(
        api.request(method, url, json={"alias": alias, "connection_uri": "sqlite://"})
    )

    assert body["detail"][0]["loc"][:2] == ["body", "alias"]
    assert api.get(f"{CONNECTIONS}/{connection['id']}").json()["alias"] == connection["alias"]
