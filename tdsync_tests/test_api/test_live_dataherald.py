"""Dataherald compatibility (issue 14): the official `dataherald` SDK, unchanged but for its
`base_url` and `api_key`, and the engine's request bodies, against a real keyed `tdsync api`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime

import dataherald
import httpx
import pytest
import sqlalchemy as sa

from tdsync.store import CatalogueStore
from tdsync_tests.conftest import execute, until
from tdsync_tests.test_api.live import ApiProcess, unique

API_KEY = "dh-compat-key"
PASSWORD = "Pa55-w0rd-never-shown"
SCANNED = "SCANNED"


@pytest.fixture(scope="module")
def keyed_api(
    api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    server = ApiProcess(
        {**api_env, "TDSYNC_API_KEY": API_KEY}, tmp_path_factory.mktemp("dh") / "server.log"
    )
    yield server
    server.stop()


@pytest.fixture
def sdk(keyed_api: ApiProcess) -> Iterator[dataherald.Dataherald]:
    # The SDK's own default client passes `proxies`, which httpx 0.28 removed: given one instead.
    with httpx.Client(timeout=60.0) as http_client:
        yield dataherald.Dataherald(
            api_key=API_KEY, base_url=keyed_api.url, http_client=http_client, max_retries=0
        )


@pytest.fixture
def http(keyed_api: ApiProcess) -> Iterator[httpx.Client]:
    with keyed_api.client(headers={"X-API-Key": API_KEY}) as client:
        yield client


@pytest.fixture
def pg_table(pg_url: str) -> str:
    table = unique("dh_orders")
    execute(pg_url, f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, status TEXT)")
    execute(pg_url, f"INSERT INTO {table} VALUES (1, 'open'), (2, 'closed')")
    return table


def with_password(url: str) -> str:
    # The local PostgreSQL trusts 127.0.0.1: the password is accepted and ignored.
    return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def test_the_sdk_registers_updates_lists_edits_and_scans_unchanged(
    sdk: dataherald.Dataherald, api_store: CatalogueStore, pg_url: str, pg_table: str
):
    uri = with_password(pg_url)
    created = sdk.database_connections.create(
        alias=unique("dh"), connection_uri=uri, metadata={"team": "data"}
    )
    masked = uri.replace(PASSWORD, "*****")
    assert created.connection_uri == masked

    # Registration listed the tables before answering, as the engine does.
    listed = sdk.table_descriptions.list(db_connection_id=created.id, table_name="")
    orders = next(d for d in listed if d.table_name == pg_table)
    assert orders.status == "NOT_SCANNED"

    # The SDK's update requires connection_uri: sending the masked one keeps the password.
    updated = sdk.database_connections.update(
        created.id, alias=created.alias + "_renamed", connection_uri=created.connection_uri
    )
    assert updated.alias == created.alias + "_renamed"
    assert api_store.connection_uri(created.id) == uri
    assert sdk.database_connections.retrieve(created.id).connection_uri == masked
    assert created.id in {c.id for c in sdk.database_connections.list()}

    claimed = sdk.table_descriptions.sync_schemas(
        body=[{"db_connection_id": created.id, "table_names": [pg_table]}]
    )
    assert [(d.table_name, d.status) for d in claimed] == [(pg_table, "SYNCHRONIZING")]
    until(
        lambda: sdk.table_descriptions.retrieve(orders.id).status == SCANNED,
        "the SDK's scan finished",
    )

    edited = sdk.table_descriptions.update(
        orders.id,
        description="one row per order",
        columns=[{"name": "status", "description": "where it is", "categories": ["open"]}],
        examples=[{"id": 9, "status": "open"}],
        metadata={"owner": "sales"},
    )
    status = next(c for c in edited.columns if c.name == "status")
    assert (edited.description, status.description, status.categories) == (
        "one row per order",
        "where it is",
        ["open"],
    )
    assert status.low_cardinality is True
    assert edited.examples == [{"id": 9, "status": "open"}]
    assert sdk.table_descriptions.retrieve(orders.id).metadata.to_dict() == {"owner": "sales"}

    refreshed = sdk.post(
        "/api/table-descriptions/refresh", body={"db_connection_id": created.id}, cast_to=object
    )
    assert pg_table in {d["table_name"] for d in refreshed}
    assert isinstance(sdk.heartbeat.retrieve(), int)


def test_a_wrong_x_api_key_is_401(keyed_api: ApiProcess):
    with httpx.Client(timeout=60.0) as http_client:
        wrong = dataherald.Dataherald(
            api_key="not-it", base_url=keyed_api.url, http_client=http_client, max_retries=0
        )
        with pytest.raises(dataherald.AuthenticationError):
            wrong.database_connections.list()


def test_the_engine_heartbeat_answers_on_both_prefixes(http: httpx.Client):
    for path in ("/api/v1/heartbeat", "/api/heartbeat"):
        response = http.get(path)
        assert response.status_code == 200 and isinstance(response.json(), int)


def test_a_masked_password_for_another_user_or_host_is_refused_and_nothing_changes(
    http: httpx.Client, api_store: CatalogueStore, pg_url: str
):
    uri = with_password(pg_url)
    created = http.post(
        "/api/database-connections", json={"alias": unique("dh"), "connection_uri": uri}
    ).json()
    masked = sa.make_url(created["connection_uri"])

    other_host = masked.set(host="localhost").render_as_string(hide_password=False)
    other_user = masked.set(username="intruder").render_as_string(hide_password=False)
    answers = [
        http.put(f"/api/database-connections/{created['id']}", json={"connection_uri": u})
        for u in (other_host, other_user)
    ]

    assert [a.status_code for a in answers] == [400, 400]
    assert {a.json()["error_code"] for a in answers} == {"invalid_database_connection"}
    assert api_store.connection_uri(created["id"]) == uri


def test_empty_and_qualified_table_name_filters(http: httpx.Client, pg_url: str, pg_table: str):
    created = http.post(
        "/api/v1/database-connections", json={"alias": unique("dh"), "connection_uri": pg_url}
    ).json()
    params = {"db_connection_id": created["id"]}

    everything = http.get("/api/table-descriptions", params={**params, "table_name": ""})
    qualified = http.get(
        "/api/v1/table-descriptions", params={**params, "table_name": f"public.{pg_table}"}
    )

    assert pg_table in {d["table_name"] for d in everything.json()}
    assert [d["table_name"] for d in qualified.json()] == [pg_table]


def test_datetimes_are_written_as_the_engine_writes_them(http: httpx.Client, pg_url: str):
    created = http.post(
        "/api/v1/database-connections", json={"alias": unique("dh"), "connection_uri": pg_url}
    ).json()
    rows = http.get("/api/v1/table-descriptions", params={"db_connection_id": created["id"]})

    for value in [created["created_at"], *(d["created_at"] for d in rows.json())]:
        assert value.endswith("+00:00")
        assert datetime.fromisoformat(value).utcoffset().total_seconds() == 0


def test_clearing_categories_clears_low_cardinality_and_structure_is_not_editable(
    http: httpx.Client, pg_url: str, pg_table: str
):
    created = http.post(
        "/api/v1/database-connections", json={"alias": unique("dh"), "connection_uri": pg_url}
    ).json()
    rows = http.get(
        "/api/v1/table-descriptions",
        params={"db_connection_id": created["id"], "table_name": pg_table},
    ).json()
    http.post(
        "/api/v1/table-descriptions/sync-schemas",
        json={"ids": [rows[0]["id"]], "metadata": {"dh_internal": {"organization_id": "org1"}}},
    )
    url = f"/api/v1/table-descriptions/{rows[0]['id']}"
    until(lambda: http.get(url).json()["status"] == SCANNED, "the scan finished")
    scanned = http.get(url).json()
    status = next(c for c in scanned["columns"] if c["name"] == "status")

    sent_back = http.put(url, json={"columns": [{**status, "description": "as it was"}]})
    cleared = http.put(url, json={"columns": [{"name": "status", "categories": []}]})
    retyped = http.put(url, json={"columns": [{"name": "status", "data_type": "INTEGER"}]})

    assert scanned["metadata"] == {"dh_internal": {"organization_id": "org1"}}
    assert status["low_cardinality"] is True
    assert sent_back.status_code == 200, sent_back.text
    column = next(c for c in cleared.json()["columns"] if c["name"] == "status")
    assert (column["categories"], column["low_cardinality"]) == ([], False)
    assert retyped.status_code == 422
    assert retyped.json()["detail"]["fields"] == ["columns.status.data_type"]


def test_llm_api_key_is_stored_encrypted_and_shown_masked_and_unsupported_fields_are_named(
    http: httpx.Client, api_store: CatalogueStore, pg_url: str
):
    created = http.post(
        "/api/database-connections",
        json={"alias": unique("dh"), "connection_uri": pg_url, "llm_api_key": "sk-secret-1234"},
    )
    refused = http.post(
        "/api/database-connections",
        json={
            "alias": unique("dh"),
            "connection_uri": pg_url,
            "path_to_credentials_file": "/etc/ssh/key",
        },
    )

    assert created.status_code == 201, created.text
    assert created.json()["llm_api_key"] == "*****"
    doc = api_store.connections.find_one({"alias": created.json()["alias"]})
    assert "sk-secret" not in str(doc)
    assert api_store.cipher.decrypt(doc["llm_api_key"]) == "sk-secret-1234"
    assert refused.status_code == 422
    assert "path_to_credentials_file" in refused.text


def test_a_registration_that_cannot_list_stores_nothing(
    http: httpx.Client, api_store: CatalogueStore
):
    alias = unique("dh")
    response = http.post(
        "/api/database-connections",
        json={"alias": alias, "connection_uri": "sqlite:////nonexistent/x.db"},
    )

    assert response.status_code == 400
    assert api_store.connections.find_one({"alias": alias}) is None


def test_docs_page_loads_every_asset_from_the_api_itself(http: httpx.Client):
    page = http.get("/docs")
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)

    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert assets and all(a.startswith("/") for a in assets), assets  # no CDN
    for asset in assets:
        response = http.get(asset)
        assert response.status_code == 200 and response.content, asset
    # Swagger UI 4 shows "Unable to render this definition" for FastAPI's OpenAPI 3.1.
    assert http.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = next(a for a in assets if a.endswith("swagger-ui-bundle.js"))
    assert b"isOAS31" in http.get(bundle).content
