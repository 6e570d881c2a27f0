"""/api/v1/table-descriptions (list, get, people's edits) and the API's general behaviour,
against a real `tdsync api` process."""

from __future__ import annotations

import httpx
import pytest
from bson import ObjectId

from tdsync.store import CatalogueStore
from tdsync_tests.test_api.live import ApiProcess, unique

DESCRIPTIONS = "/api/v1/table-descriptions"
SCANNED_COLUMNS = [
    {
        "name": "id",
        "data_type": "INTEGER",
        "is_primary_key": True,
        "nullable": False,
        "description": None,
        "low_cardinality": False,
        "categories": None,
        "foreign_key": None,
    },
    {
        "name": "status",
        "data_type": "TEXT",
        "is_primary_key": False,
        "nullable": True,
        "description": None,
        "low_cardinality": True,
        "categories": ["open", "closed"],
        "foreign_key": None,
    },
]


@pytest.fixture
def catalogue(api: httpx.Client, make_sqlite) -> dict[str, dict]:
    """A refreshed connection with tables orders, items and a view; {table_name: description}."""
    path = make_sqlite(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT)",
        "CREATE TABLE items (id INTEGER PRIMARY KEY)",
        "CREATE VIEW open_orders AS SELECT * FROM orders",
    )
    created = api.post(
        "/api/v1/database-connections",
        json={"alias": unique("shop"), "connection_uri": f"sqlite:///{path}"},
    )
    refreshed = api.post(f"{DESCRIPTIONS}/refresh", json={"db_connection_id": created.json()["id"]})
    assert refreshed.status_code == 201
    return {d["table_name"]: d for d in refreshed.json()}


def as_scanned(store: CatalogueStore, description_id: str) -> None:
    """What a scan leaves behind (the scan is another issue's job): columns, DDL, samples."""
    store.descriptions.update_one(
        {"_id": ObjectId(description_id)},
        {
            "$set": {
                "status": "SCANNED",
                "columns": SCANNED_COLUMNS,
                "table_schema": "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT)",
                "examples": [{"id": 1, "status": "open"}],
            }
        },
    )


def test_list_filters_by_schema_table_and_status(api: httpx.Client, catalogue: dict):
    connection_id = catalogue["orders"]["db_connection_id"]

    def names(**params) -> list[str]:
        response = api.get(DESCRIPTIONS, params={"db_connection_id": connection_id, **params})
        assert response.status_code == 200, response.text
        return [d["table_name"] for d in response.json()]

    assert names() == ["items", "open_orders", "orders"]
    assert names(schema_name="main") == ["items", "open_orders", "orders"]
    assert names(schema_name="other") == []
    assert names(table_name="orders") == ["orders"]
    assert names(status="NOT_SCANNED") == ["items", "open_orders", "orders"]
    assert names(status="SCANNED") == []


def test_get_returns_one_description_as_the_list_shows_it(api: httpx.Client, catalogue: dict):
    orders = catalogue["orders"]

    response = api.get(f"{DESCRIPTIONS}/{orders['id']}")

    assert response.status_code == 200
    assert response.json() == orders


def test_put_changes_only_peoples_fields(
    api: httpx.Client, api_store: CatalogueStore, catalogue: dict
):
    orders_id = catalogue["orders"]["id"]
    as_scanned(api_store, orders_id)

    response = api.put(
        f"{DESCRIPTIONS}/{orders_id}",
        json={
            "description": "One row per customer order.",
            "columns": [
                {"name": "status", "description": "Where the order is", "categories": ["open"]}
            ],
            "metadata": {"owner": "sales"},
            # Not people's fields: ignored.
            "status": "DEPRECATED",
            "table_schema": "DROP TABLE orders",
            "table_name": "renamed",
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["description"], body["metadata"]) == (
        "One row per customer order.",
        {"owner": "sales"},
    )
    assert (body["status"], body["table_name"]) == ("SCANNED", "orders")
    assert body["table_schema"].startswith("CREATE TABLE orders")
    assert body["examples"] == [{"id": 1, "status": "open"}]
    assert body["columns"] == [
        SCANNED_COLUMNS[0],
        {**SCANNED_COLUMNS[1], "description": "Where the order is", "categories": ["open"]},
    ]
    assert api.get(f"{DESCRIPTIONS}/{orders_id}").json() == body


def test_put_leaves_out_and_null_fields_unchanged_as_the_engine_does(
    api: httpx.Client, api_store: CatalogueStore, catalogue: dict
):
    # Issue 14 changed this: null used to clear a field; in the Dataherald engine it means
    # "unchanged" (and `{}` / `""` / `[]` clear).
    orders_id = catalogue["orders"]["id"]
    as_scanned(api_store, orders_id)
    api.put(f"{DESCRIPTIONS}/{orders_id}", json={"description": "kept", "metadata": {"a": 1}})

    nulls = api.put(
        f"{DESCRIPTIONS}/{orders_id}",
        json={"description": None, "metadata": None, "columns": None, "examples": None},
    ).json()
    column_only = api.put(
        f"{DESCRIPTIONS}/{orders_id}",
        json={"columns": [{"name": "id", "description": "key", "categories": None}]},
    ).json()
    cleared = api.put(f"{DESCRIPTIONS}/{orders_id}", json={"metadata": {}}).json()

    assert (nulls["description"], nulls["metadata"]) == ("kept", {"a": 1})
    assert nulls["columns"] == SCANNED_COLUMNS and nulls["examples"] == [
        {"id": 1, "status": "open"}
    ]
    assert cleared["metadata"] == {}
    assert column_only["columns"][0]["description"] == "key"
    assert column_only["columns"][1] == SCANNED_COLUMNS[1]  # its categories untouched


def test_put_naming_an_unknown_column_is_422_and_changes_nothing(
    api: httpx.Client, api_store: CatalogueStore, catalogue: dict
):
    orders_id = catalogue["orders"]["id"]
    as_scanned(api_store, orders_id)
    before = api.get(f"{DESCRIPTIONS}/{orders_id}").json()

    response = api.put(
        f"{DESCRIPTIONS}/{orders_id}",
        json={
            "description": "should not be written",
            "columns": [
                {"name": "status", "description": "x"},
                {"name": "colour", "description": "y"},
            ],
        },
    )

    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_error"
    assert "colour" in response.json()["message"]
    assert response.json()["detail"]["unknown_columns"] == ["colour"]
    assert api.get(f"{DESCRIPTIONS}/{orders_id}").json() == before


def test_a_description_written_by_people_survives_later_refreshes(
    api: httpx.Client, catalogue: dict
):
    items = catalogue["items"]
    api.put(f"{DESCRIPTIONS}/{items['id']}", json={"description": "line items"})

    again = api.post(
        f"{DESCRIPTIONS}/refresh", json={"db_connection_id": items["db_connection_id"]}
    )

    assert {d["table_name"]: d["description"] for d in again.json()}["items"] == "line items"


@pytest.mark.parametrize(
    "body",
    [
        {"columns": [{"description": "no name"}]},
        {"columns": [{"name": "id"}, {"name": "id"}]},
        {"description": 12},
        {"metadata": ["not", "an", "object"]},
        {"metadata": {"nested": {"$where": "1"}}},  # MongoDB operators are not data
        {"metadata": {"a\x00b": 1}},
        {"metadata": {"big": 2**64}},
        '{"description": "\\ud800"}',  # a lone surrogate (raw JSON): no UTF-8 for MongoDB
    ],
)
def test_a_malformed_description_update_is_422(api: httpx.Client, body):
    url = f"{DESCRIPTIONS}/64fa09446cec0b4ff60d3ae3"  # the body is judged before the id
    if isinstance(body, str):
        response = api.put(url, content=body, headers={"content-type": "application/json"})
    else:
        response = api.put(url, json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error_code"] == "validation_error"


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"db_connection_id": "nope"},
        {"db_connection_id": "64fa09446cec0b4ff60d3ae3", "status": "LOST"},
    ],
)
def test_a_malformed_list_query_is_422(api: httpx.Client, params):
    response = api.get(DESCRIPTIONS, params=params)

    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_error"
    assert response.json()["detail"][0]["loc"][0] == "query"


def test_listing_an_unknown_connection_is_404(api: httpx.Client):
    response = api.get(DESCRIPTIONS, params={"db_connection_id": "64fa09446cec0b4ff60d3ae3"})

    assert response.status_code == 404
    assert response.json()["error_code"] == "database_connection_not_found"


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_description_ids_in_the_path_are_checked(api: httpx.Client, method: str):
    malformed = api.request(method, f"{DESCRIPTIONS}/12345", json={})
    unknown = api.request(method, f"{DESCRIPTIONS}/64fa09446cec0b4ff60d3ae3", json={})

    assert (malformed.status_code, malformed.json()["error_code"]) == (400, "invalid_object_id")
    assert (unknown.status_code, unknown.json()["error_code"]) == (
        404,
        "table_description_not_found",
    )


def test_health_reports_mongo_ok(api: httpx.Client):
    response = api.get("/health")

    assert (response.status_code, response.json()) == (200, {"status": "ok", "mongo": "ok"})


def test_openapi_and_docs_are_served(api: httpx.Client):
    spec = api.get("/openapi.json")
    docs = api.get("/docs")

    assert spec.status_code == 200
    assert {
        "/api/v1/database-connections",
        "/api/v1/database-connections/{db_connection_id}",
        "/api/v1/table-descriptions",
        "/api/v1/table-descriptions/{table_description_id}",
        "/api/v1/table-descriptions/refresh",
        "/health",
    } <= set(spec.json()["paths"])
    refresh = spec.json()["paths"]["/api/v1/table-descriptions/refresh"]["post"]
    assert "201" in refresh["responses"]
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_unknown_routes_and_methods_answer_json_errors(api: httpx.Client):
    missing = api.get("/api/v1/nothing-here")
    wrong_method = api.patch("/api/v1/database-connections")

    assert (missing.status_code, missing.json()["error_code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error_code"]) == (
        405,
        "method_not_allowed",
    )


def test_the_server_log_holds_no_traceback(api: httpx.Client, live_api: ApiProcess):
    api.get("/api/v1/table-descriptions/refresh")  # a GET on a POST route, for good measure

    assert "Traceback" not in live_api.log()


def test_one_put_describes_several_columns_at_once(
    api: httpx.Client, api_store: CatalogueStore, catalogue: dict
):
    # SecantusDB's `$all` over columns.name matched nothing for two names: such a PUT was a 422.
    orders = catalogue["orders"]
    as_scanned(api_store, orders["id"])

    response = api.put(
        f"{DESCRIPTIONS}/{orders['id']}",
        json={
            "columns": [
                {"name": "id", "description": "key"},
                {"name": "status", "description": "state"},
            ]
        },
    )

    assert response.status_code == 200, response.text
    assert [c["description"] for c in response.json()["columns"]] == ["key", "state"]
