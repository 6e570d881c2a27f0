"""POST /api/v1/table-descriptions/sync-schemas: 201 with the rows now SYNCHRONIZING, the scan
running as a Dagster run in a detached process (no dagster-daemon anywhere in these tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from tdsync.api.app import create_app
from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.domain.models import Status
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import until
from tdsync_tests.test_api.live import ApiProcess, isolated_env, settings_for, unique
from tdsync_tests.test_scan.conftest import SQLITE_SHOP, run_statements

SYNC = "/api/v1/table-descriptions/sync-schemas"
MISSING_ID = "0123456789abcdef01234567"


@pytest.fixture
def client(tdsync_env: dict[str, str], settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def shop(store: CatalogueStore, tmp_path: Path) -> str:
    path = tmp_path / "shop.db"
    run_statements(f"sqlite:///{path}", SQLITE_SHOP)
    return store.add_connection(alias="shop", connection_uri=f"sqlite:///{path}").id


def refresh(client: TestClient, connection_id: str) -> None:
    # Through the app, which opens the Dagster instance once: a second, concurrent first opening
    # of a fresh DAGSTER_HOME in this process races on creating its storage.
    response = client.post(
        "/api/v1/table-descriptions/refresh", json={"db_connection_id": connection_id}
    )
    assert response.status_code == 201, response.text


def scan_finished(store: CatalogueStore, connection_id: str, *, settings: Settings) -> bool:
    """Every row settled and the scan's Dagster run ended."""
    if any(d.status == Status.SYNCHRONIZING for d in store.list_descriptions(connection_id)):
        return False
    scans = webhook_scans(connection_id, settings=settings)
    return bool(scans) and all(run.is_finished for run in scans)


def webhook_scans(connection_id: str, *, settings: Settings) -> list[dg.DagsterRun]:
    return list(
        runs.instance(settings).get_runs(
            filters=dg.RunsFilter(
                job_name="scan_table_descriptions",
                tags={CONNECTION_TAG: connection_id, TRIGGER_TAG: "webhook"},
            )
        )
    )


def test_sync_schemas_answers_201_with_rows_synchronizing_then_scans_them_in_a_dagster_run(
    client: TestClient, store: CatalogueStore, shop: str, settings: Settings
) -> None:
    # Never refreshed: the request refreshes the connection first, then claims every table.
    response = client.post(SYNC, json={"db_connection_id": shop})
    assert response.status_code == 201, response.text
    body = response.json()
    assert [d["table_name"] for d in body] == sorted(d["table_name"] for d in body)
    assert len(body) == 5 and {d["status"] for d in body} == {"SYNCHRONIZING"}

    until(
        lambda: scan_finished(store, shop, settings=settings),
        "the detached scan run has settled every row",
        poll_s=0.1,
    )
    rows = store.list_descriptions(shop)
    assert {d.status for d in rows} == {Status.SCANNED}
    (run,) = webhook_scans(shop, settings=settings)
    assert run.is_success
    listed = client.get("/api/v1/table-descriptions", params={"db_connection_id": shop}).json()
    orders = next(d for d in listed if d["table_name"] == "orders")
    assert orders["table_schema"].startswith("CREATE TABLE") and orders["examples"]
    assert [c["name"] for c in orders["columns"] if c["is_primary_key"]] == [
        "customer_id",
        "order_no",
    ]


def test_duplicate_ids_are_scanned_once(
    client: TestClient, store: CatalogueStore, shop: str, settings: Settings
) -> None:
    refresh(client, shop)
    rows = {d.table_name: d.id for d in store.list_descriptions(shop)}
    ids = [rows["orders"], rows["customers"], rows["orders"]]
    response = client.post(SYNC, json={"ids": ids})
    assert response.status_code == 201, response.text
    assert [d["table_name"] for d in response.json()] == ["customers", "orders"]
    until(
        lambda: scan_finished(store, shop, settings=settings),
        "the scan has settled its rows",
        poll_s=0.1,
    )
    statuses = {d.table_name: d.status for d in store.list_descriptions(shop)}
    assert statuses["orders"] == statuses["customers"] == Status.SCANNED
    assert statuses["order_lines"] == Status.NOT_SCANNED  # not asked for
    (run,) = webhook_scans(shop, settings=settings)
    assert sorted(run.run_config["ops"]["start_scan"]["config"]["description_ids"]) == sorted(
        set(ids)
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"ids": [MISSING_ID]}, 404, "table_description_not_found"),
        ({"db_connection_id": MISSING_ID}, 404, "database_connection_not_found"),
        ({}, 422, "validation_error"),
        ({"ids": ["not-an-object-id"]}, 422, "validation_error"),
        ({"ids": []}, 422, "validation_error"),
    ],
)
def test_bad_requests_are_refused_with_their_error_code(
    client: TestClient, body: dict, status: int, code: str
) -> None:
    response = client.post(SYNC, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code


def test_unknown_table_names_are_not_found_and_nothing_is_claimed(
    client: TestClient, store: CatalogueStore, shop: str
) -> None:
    refresh(client, shop)
    response = client.post(SYNC, json={"db_connection_id": shop, "table_names": ["orders", "nope"]})
    assert response.status_code == 404
    assert response.json()["error_code"] == "table_description_not_found"
    assert response.json()["detail"] == {"table_names": ["nope"]}
    assert {d.status for d in store.list_descriptions(shop)} == {Status.NOT_SCANNED}


def test_sync_schemas_through_a_real_api_process(
    mongo_uri: str, tmp_path: Path, store: CatalogueStore
) -> None:
    env = isolated_env(mongo_uri, tmp_path / "live")
    server = ApiProcess(env, tmp_path / "api.log")
    try:
        with server.client() as api:
            path = tmp_path / "live.db"
            run_statements(f"sqlite:///{path}", SQLITE_SHOP)
            created = api.post(
                "/api/v1/database-connections",
                json={"alias": unique("live"), "connection_uri": f"sqlite:///{path}"},
            )
            assert created.status_code == 201, created.text
            connection_id = created.json()["id"]
            claimed = api.post(
                SYNC, json={"db_connection_id": connection_id, "table_names": ["orders"]}
            )
            assert claimed.status_code == 201, claimed.text
            assert [(d["table_name"], d["status"]) for d in claimed.json()] == [
                ("orders", "SYNCHRONIZING")
            ]
            description_id = claimed.json()[0]["id"]

            def scanned() -> bool:
                got = api.get(f"/api/v1/table-descriptions/{description_id}").json()
                return got["status"] == "SCANNED"

            until(scanned, "the live API's scan has finished", poll_s=0.1)
            got = api.get(f"/api/v1/table-descriptions/{description_id}").json()
            assert got["columns"][2]["categories"] == ["new", "paid", "shipped"]
            assert got["last_schema_sync"] is not None
    finally:
        server.stop()
        from tdsync.store.client import open_store

        open_store(settings_for(env)).client.drop_database(env["TDSYNC_MONGO_DB"])


def test_changed_only_sync_claims_and_scans_the_altered_table_alone(
    client: TestClient, store: CatalogueStore, shop: str, settings: Settings
) -> None:
    refresh(client, shop)
    assert runs.scan(shop, trigger="cli", settings=settings)["failed"] == 0
    before = {d.table_name: d.last_schema_sync for d in store.list_descriptions(shop)}
    run_statements(store.connection_uri(shop), ["ALTER TABLE orders ADD COLUMN note VARCHAR(40)"])

    response = client.post(SYNC, json={"db_connection_id": shop, "changed_only": True})

    assert response.status_code == 201, response.text
    assert [(d["table_name"], d["status"]) for d in response.json()] == [
        ("orders", "SYNCHRONIZING")
    ]
    until(
        lambda: scan_finished(store, shop, settings=settings),
        "the scan has settled its rows",
        poll_s=0.1,
    )
    after = {d.table_name: d for d in store.list_descriptions(shop)}
    assert after["orders"].status == Status.SCANNED
    assert after["orders"].columns[-1].name == "note"
    assert after["orders"].last_schema_sync > before["orders"]
    assert {n: d.last_schema_sync for n, d in after.items() if n != "orders"} == {
        n: t for n, t in before.items() if n != "orders"
    }
    # Nothing changed since: nothing is claimed.
    again = client.post(SYNC, json={"db_connection_id": shop, "changed_only": True})
    assert (again.status_code, again.json()) == (201, [])
