"""One row that cannot be written (it would outgrow MongoDB's 16 MiB document) fails alone.

A description people wrote (or a PUT let through) close to 16 MiB leaves no room for the scan's
fields: that row becomes FAILED saying so, every other row of the connection is scanned, and no
row is left SYNCHRONIZING, through the scan job and through `POST …/sync-schemas`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import bson
import pytest
from bson import ObjectId
from fastapi.testclient import TestClient

from tdsync.api.app import create_app
from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.models import Status
from tdsync.store import CatalogueStore
from tdsync.store.scan_writes import TOO_LARGE_TO_CLAIM, TOO_LARGE_TO_SCAN
from tdsync_tests.conftest import until
from tdsync_tests.test_scan.conftest import SQLITE_SHOP, run_statements
from tdsync_tests.test_scan.test_sync_schemas import SYNC, scan_finished

DOCUMENT_LIMIT = 16 * 1024 * 1024


@pytest.fixture
def shop(store: CatalogueStore, tmp_path: Path, settings: Settings) -> str:
    path = tmp_path / "shop.db"
    run_statements(f"sqlite:///{path}", SQLITE_SHOP)
    connection_id = store.add_connection(alias="shop", connection_uri=f"sqlite:///{path}").id
    runs.refresh(connection_id, trigger="cli", settings=settings)
    return connection_id


def fill_description(store: CatalogueStore, connection_id: str, table: str, room: int) -> str:
    """Write `table`'s description straight into the store, so its document has `room` bytes
    left below 16 MiB; returns the description."""
    query = {"db_connection_id": connection_id, "table_name": table}
    store.descriptions.update_one(query, {"$set": {"description": ""}})
    size = len(bson.encode(store.descriptions.find_one(query)))
    description = "d" * (DOCUMENT_LIMIT - room - size)
    store.descriptions.update_one(query, {"$set": {"description": description}})
    assert len(bson.encode(store.descriptions.find_one(query))) == DOCUMENT_LIMIT - room
    return description


def statuses(store: CatalogueStore, connection_id: str) -> dict[str, tuple[Status, str | None]]:
    docs = store.descriptions.find(
        {"db_connection_id": connection_id}, {"table_name": 1, "status": 1, "error_message": 1}
    )
    return {d["table_name"]: (Status(d["status"]), d.get("error_message")) for d in docs}


def test_a_scan_result_too_large_to_store_fails_that_row_alone(
    store: CatalogueStore, shop: str, settings: Settings
):
    # Room for the claim (run id, lease), not for the columns, DDL and examples.
    description = fill_description(store, shop, "orders", room=300)

    summary = runs.scan(shop, trigger="cli", settings=settings)

    rows = statuses(store, shop)
    assert rows.pop("orders") == (Status.FAILED, TOO_LARGE_TO_SCAN)
    assert set(rows.values()) == {(Status.SCANNED, None)}
    assert (summary["scanned"], summary["failed"]) == (len(rows), 1)
    orders = store.descriptions.find_one({"db_connection_id": shop, "table_name": "orders"})
    assert orders["description"] == description  # what people wrote is kept
    assert "scan_run_id" not in orders and "scan_lease_expires_at" not in orders


@pytest.fixture
def client(tdsync_env: dict[str, str], settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_sync_schemas_claims_the_others_when_one_row_cannot_even_be_claimed(
    client: TestClient, store: CatalogueStore, shop: str, settings: Settings
):
    fill_description(store, shop, "customers", room=40)  # not even the run id fits

    response = client.post(SYNC, json={"db_connection_id": shop})

    assert response.status_code == 201, response.text
    claimed = [d["table_name"] for d in response.json()]
    assert "customers" not in claimed and len(claimed) == 4
    until(
        lambda: scan_finished(store, shop, settings=settings),
        "the scan has settled its rows",
        poll_s=0.1,
    )
    rows = statuses(store, shop)
    assert rows.pop("customers")[0] == Status.FAILED
    assert set(rows.values()) == {(Status.SCANNED, None)}
    customers = store.descriptions.find_one({"_id": ObjectId(store_id(store, shop, "customers"))})
    assert customers["error_message"] in (TOO_LARGE_TO_CLAIM, None)  # the reason, if it fits


def store_id(store: CatalogueStore, connection_id: str, table: str) -> str:
    doc = store.descriptions.find_one({"db_connection_id": connection_id, "table_name": table})
    return str(doc["_id"])
