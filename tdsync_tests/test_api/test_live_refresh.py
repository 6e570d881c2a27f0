"""POST /api/v1/table-descriptions/refresh against a real `tdsync api` process."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.store import CatalogueStore
from tdsync_tests.test_api.live import ApiProcess, unique

REFRESH = "/api/v1/table-descriptions/refresh"
CONNECTIONS = "/api/v1/database-connections"
# The fields of Dataherald's documented refresh response, plus schema_name.
DATAHERALD_FIELDS = {
    "id",
    "db_connection_id",
    "schema_name",
    "table_name",
    "description",
    "table_schema",
    "status",
    "error_message",
    "columns",
    "examples",
}


def register(api: httpx.Client, uri: str, **fields) -> str:
    response = api.post(
        CONNECTIONS, json={"alias": unique("conn"), "connection_uri": uri, **fields}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


def webhook_runs(live_api: ApiProcess, connection_id: str) -> list[dg.DagsterRun]:
    """The connection's refresh runs from the API, newest first, less the registration's own
    (issue 14: registering a connection lists its tables in a refresh run, its first)."""
    instance = dg.DagsterInstance.from_config(live_api.env["DAGSTER_HOME"])
    try:
        return list(
            instance.get_runs(
                filters=dg.RunsFilter(tags={CONNECTION_TAG: connection_id, TRIGGER_TAG: "webhook"})
            )
        )[:-1]
    finally:
        instance.dispose()


def test_refresh_answers_201_with_every_description_sorted_and_records_a_webhook_run(
    api: httpx.Client, live_api: ApiProcess, make_sqlite
):
    path = make_sqlite(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY)",
        "CREATE TABLE Users (id INTEGER PRIMARY KEY)",
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY)",
        "CREATE VIEW big_orders AS SELECT * FROM orders",
    )
    connection_id = register(api, sqlite_uri(path))

    response = api.post(REFRESH, json={"db_connection_id": connection_id})

    assert response.status_code == 201, response.text
    body = response.json()
    assert [(d["schema_name"], d["table_name"]) for d in body] == [
        ("main", "Users"),  # case preserved, and sorted by code point like Mongo would
        ("main", "accounts"),
        ("main", "big_orders"),
        ("main", "orders"),
    ]
    assert all(set(d) >= DATAHERALD_FIELDS for d in body)
    assert {d["status"] for d in body} == {"NOT_SCANNED"}
    assert {d["db_connection_id"] for d in body} == {connection_id}
    assert next(d for d in body if d["table_name"] == "big_orders")["table_type"] == "VIEW"
    assert not any("scan_lease_expires_at" in d for d in body)
    [run] = webhook_runs(live_api, connection_id)
    assert run.job_name == "refresh_table_descriptions"
    assert run.status == dg.DagsterRunStatus.SUCCESS


def test_refresh_deprecates_a_dropped_table_and_restores_it_with_its_description(
    api: httpx.Client, make_sqlite
):
    path = make_sqlite(
        "CREATE TABLE keep (id INTEGER)", "CREATE TABLE flaky (id INTEGER)", name="flaky.db"
    )
    connection_id = register(api, sqlite_uri(path))
    first = api.post(REFRESH, json={"db_connection_id": connection_id}).json()
    flaky_id = next(d["id"] for d in first if d["table_name"] == "flaky")
    assert api.put(
        f"/api/v1/table-descriptions/{flaky_id}", json={"description": "by hand"}
    ).is_success

    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE flaky")
    gone = api.post(REFRESH, json={"db_connection_id": connection_id}).json()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE flaky (id INTEGER)")
    back = api.post(REFRESH, json={"db_connection_id": connection_id}).json()

    assert {d["table_name"]: d["status"] for d in gone} == {
        "flaky": "DEPRECATED",
        "keep": "NOT_SCANNED",
    }
    flaky = next(d for d in back if d["table_name"] == "flaky")
    assert (flaky["id"], flaky["status"], flaky["description"]) == (
        flaky_id,
        "NOT_SCANNED",
        "by hand",
    )


def test_refresh_of_a_postgres_connection_lists_each_configured_schema(
    api: httpx.Client, pg_url: str
):
    sales, hr = unique("sales"), unique("hr")
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        for schema, table in ((sales, "orders"), (sales, "Customers"), (hr, "staff")):
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            conn.execute(sa.text(f'CREATE TABLE "{schema}"."{table}" (id int primary key)'))
        conn.execute(sa.text(f'CREATE VIEW "{hr}".staff_names AS SELECT id FROM "{hr}".staff'))
    engine.dispose()
    connection_id = register(api, pg_url, schemas=[sales, hr])

    response = api.post(REFRESH, json={"db_connection_id": connection_id})

    assert response.status_code == 201, response.text
    assert [(d["schema_name"], d["table_name"], d["table_type"]) for d in response.json()] == [
        (hr, "staff", "TABLE"),
        (hr, "staff_names", "VIEW"),
        (sales, "Customers", "TABLE"),
        (sales, "orders", "TABLE"),
    ]


def test_refresh_of_an_unknown_connection_is_404_and_starts_no_run(
    api: httpx.Client, live_api: ApiProcess
):
    missing = "64fa09446cec0b4ff60d3ae3"

    response = api.post(REFRESH, json={"db_connection_id": missing})

    assert response.status_code == 404
    assert response.json()["error_code"] == "database_connection_not_found"
    assert webhook_runs(live_api, missing) == []


def test_refresh_whose_source_is_gone_answers_invalid_database_connection_with_the_run_id(
    api: httpx.Client, live_api: ApiProcess, make_sqlite
):
    path = make_sqlite("CREATE TABLE t (id INTEGER)", name="vanishing.db")
    connection_id = register(api, sqlite_uri(path))
    path.unlink()

    response = api.post(REFRESH, json={"db_connection_id": connection_id})

    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "invalid_database_connection"
    [run] = webhook_runs(live_api, connection_id)
    assert body["detail"]["run_id"] == run.run_id
    assert run.status == dg.DagsterRunStatus.FAILURE


def test_refresh_of_a_database_that_lost_every_table_answers_empty_database(
    api: httpx.Client, api_store: CatalogueStore, make_sqlite
):
    path = make_sqlite("CREATE TABLE a (id INTEGER)", "CREATE TABLE b (id INTEGER)", name="e.db")
    connection_id = register(api, sqlite_uri(path))
    assert api.post(REFRESH, json={"db_connection_id": connection_id}).status_code == 201
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE a")
        conn.execute("DROP TABLE b")

    response = api.post(REFRESH, json={"db_connection_id": connection_id})

    assert response.status_code == 400
    assert response.json()["error_code"] == "empty_database"
    assert "run_id" in response.json()["detail"]
    statuses = {d.status for d in api_store.list_descriptions(connection_id)}
    assert statuses == {"NOT_SCANNED"}  # nothing was mass-deprecated


def test_refresh_confirming_an_emptied_schema_deprecates_its_tables_once(
    api: httpx.Client, api_store: CatalogueStore, make_sqlite
):
    path = make_sqlite("CREATE TABLE a (id INTEGER)", "CREATE TABLE b (id INTEGER)", name="c.db")
    connection_id = register(api, sqlite_uri(path))
    assert api.post(REFRESH, json={"db_connection_id": connection_id}).status_code == 201
    with sqlite3.connect(path) as conn:
        conn.executescript("DROP TABLE a; DROP TABLE b;")

    refused = api.post(REFRESH, json={"db_connection_id": connection_id})
    confirmed = api.post(
        REFRESH, json={"db_connection_id": connection_id, "allow_empty_schemas": ["main"]}
    )
    plain = api.post(REFRESH, json={"db_connection_id": connection_id})

    assert refused.status_code == 400
    message = refused.json()["message"]
    assert message.startswith("schema 'main' listed no tables or views")
    assert '"allow_empty_schemas": ["main"]' in message
    assert refused.json()["detail"]["schema_name"] == "main"
    assert confirmed.status_code == 201, confirmed.text
    assert {(d["table_name"], d["status"]) for d in confirmed.json()} == {
        ("a", "DEPRECATED"),
        ("b", "DEPRECATED"),
    }
    assert plain.status_code == 201  # confirmed once; nothing left to refuse


def test_allow_empty_schemas_leaves_a_schema_with_tables_alone(api: httpx.Client, make_sqlite):
    path = make_sqlite("CREATE TABLE a (id INTEGER)", name="kept.db")
    connection_id = register(api, sqlite_uri(path))

    response = api.post(
        REFRESH, json={"db_connection_id": connection_id, "allow_empty_schemas": ["main"]}
    )

    assert response.status_code == 201
    assert [(d["table_name"], d["status"]) for d in response.json()] == [("a", "NOT_SCANNED")]


@pytest.mark.parametrize(
    "body",
    [{}, {"db_connection_id": "not-an-id"}, {"db_connection_id": 42}, {"connection": "x"}],
)
def test_refresh_with_a_malformed_body_is_422_validation_error(api: httpx.Client, body):
    response = api.post(REFRESH, json=body)

    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_error"
    assert response.json()["detail"][0]["loc"][:1] == ["body"]


def test_ten_concurrent_refreshes_of_one_connection_all_answer_201_without_duplicates(
    api: httpx.Client, live_api: ApiProcess, api_store: CatalogueStore, make_sqlite
):
    path = make_sqlite(*(f"CREATE TABLE t{i:02} (id INTEGER)" for i in range(30)), name="c.db")
    connection_id = register(api, sqlite_uri(path))
    start = threading.Barrier(10)
    responses: list[httpx.Response] = []

    def refresh() -> None:
        with live_api.client() as client:
            start.wait()
            responses.append(client.post(REFRESH, json={"db_connection_id": connection_id}))

    threads = [threading.Thread(target=refresh) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in responses] == [201] * 10
    assert all(len(r.json()) == 30 for r in responses)
    assert len({tuple(d["id"] for d in r.json()) for r in responses}) == 1
    stored = Counter(
        (d["schema_name"], d["table_name"])
        for d in api_store.descriptions.find({"db_connection_id": connection_id})
    )
    assert len(stored) == 30 and max(stored.values()) == 1
    # Requests that arrive while a refresh runs share it instead of starting their own.
    assert len(webhook_runs(live_api, connection_id)) < 10


def test_refreshes_of_different_connections_run_side_by_side(
    api: httpx.Client, live_api: ApiProcess, make_sqlite
):
    ids = [
        register(
            api, sqlite_uri(make_sqlite(f"CREATE TABLE only_{i} (id INTEGER)", name=f"p{i}.db"))
        )
        for i in range(3)
    ]
    responses: dict[str, httpx.Response] = {}

    def refresh(connection_id: str) -> None:
        with live_api.client() as client:
            responses[connection_id] = client.post(
                REFRESH, json={"db_connection_id": connection_id}
            )

    threads = [threading.Thread(target=refresh, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {i: r.status_code for i, r in responses.items()} == {i: 201 for i in ids}
    assert [responses[i].json()[0]["table_name"] for i in ids] == ["only_0", "only_1", "only_2"]
    assert all(len(webhook_runs(live_api, i)) == 1 for i in ids)
