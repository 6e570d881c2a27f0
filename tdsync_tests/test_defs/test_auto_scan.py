"""Auto-scan (issue 17): a connection with `auto_scan` gets a scan of what each refresh found new,
restored or renamed, requested by a sensor on the refresh's materializations; a `scan_schedule`
fans out changed-only scans. Real SQLite sources, a real store and Dagster instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from tdsync.api.app import create_app
from tdsync.config.settings import Settings
from tdsync.definitions import defs
from tdsync.defs import runs
from tdsync.defs.resources import StoreResource
from tdsync.defs.schedules import scan_connections_on_schedule
from tdsync.defs.sensors import scan_what_refreshes_found
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.domain.models import Status
from tdsync.store import CatalogueStore
from tdsync_tests.test_defs.test_schedules import at
from tdsync_tests.test_scan.conftest import run_statements

RESOURCES = {"catalogue": StoreResource()}


@pytest.fixture
def shop_uri(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'shop.db'}"
    run_statements(
        uri,
        [
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(50))",
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, total DECIMAL(10, 2))",
        ],
    )
    return uri


def evaluate(
    cursor: str | None, *, settings: Settings
) -> tuple[list[dg.RunRequest], str | None, str | None]:
    """One evaluation of the auto-scan sensor on the instance the refreshes ran on."""
    context = dg.build_sensor_context(
        instance=runs.instance(settings), cursor=cursor, resources=RESOURCES
    )
    result = scan_what_refreshes_found.evaluate_tick(context)
    return list(result.run_requests or []), result.cursor, result.skip_message


def run_requested(request: dg.RunRequest, *, settings: Settings) -> dg.ExecuteInProcessResult:
    job = defs().get_job_def("scan_table_descriptions")
    return job.execute_in_process(
        run_config=request.run_config, instance=runs.instance(settings), tags=request.tags
    )


def test_refresh_that_adds_a_table_gets_a_scan_of_that_table_alone(
    store: CatalogueStore, shop_uri: str, settings: Settings
) -> None:
    shop = store.add_connection(alias="shop", connection_uri=shop_uri, auto_scan=True).id
    runs.refresh(shop, trigger="cli", settings=settings)
    [first], cursor, _ = evaluate(None, settings=settings)
    assert first.run_config["ops"]["start_scan"]["config"]["table_names"] == [
        "main.customers",
        "main.orders",
    ]
    assert run_requested(first, settings=settings).success
    scanned = {d.table_name: d.last_schema_sync for d in store.list_descriptions(shop)}

    run_statements(shop_uri, ["CREATE TABLE refunds (id INTEGER PRIMARY KEY, amount REAL)"])
    assert runs.refresh(shop, trigger="cli", settings=settings)["added"] == 1
    [request], cursor, _ = evaluate(cursor, settings=settings)

    assert (request.tags[CONNECTION_TAG], request.tags[TRIGGER_TAG]) == (shop, "sensor")
    assert request.run_key.startswith(f"{shop}@")
    config = request.run_config["ops"]["start_scan"]["config"]
    assert (config["table_names"], config["changed_only"]) == (["main.refunds"], False)
    assert run_requested(request, settings=settings).success
    after = {d.table_name: d for d in store.list_descriptions(shop)}
    assert after["refunds"].status == Status.SCANNED
    assert [c.name for c in after["refunds"].columns] == ["id", "amount"]
    assert {n: after[n].last_schema_sync for n in scanned} == scanned  # the others untouched

    # Looked at once: the next evaluation has nothing new.
    requests, _, skipped = evaluate(cursor, settings=settings)
    assert requests == [] and skipped == "no refresh since the last evaluation"


def test_renamed_table_is_scanned_under_its_new_name(
    store: CatalogueStore, shop_uri: str, settings: Settings
) -> None:
    shop = store.add_connection(alias="shop", connection_uri=shop_uri, auto_scan=True).id
    runs.refresh(shop, trigger="cli", settings=settings)
    runs.scan(shop, trigger="cli", settings=settings)
    _, cursor, _ = evaluate(None, settings=settings)

    run_statements(shop_uri, ["ALTER TABLE orders RENAME TO sales_orders"])
    assert runs.refresh(shop, trigger="cli", settings=settings)["renamed"] == 1
    [request], _, _ = evaluate(cursor, settings=settings)

    assert request.run_config["ops"]["start_scan"]["config"]["table_names"] == ["main.sales_orders"]
    assert run_requested(request, settings=settings).success
    (row,) = store.list_descriptions(shop, table_name="sales_orders")
    assert row.status == Status.SCANNED and "sales_orders" in row.table_schema


def test_refreshes_of_a_connection_without_auto_scan_request_nothing_and_say_why(
    store: CatalogueStore, shop_uri: str, settings: Settings
) -> None:
    shop = store.add_connection(alias="shop", connection_uri=shop_uri).id
    runs.refresh(shop, trigger="cli", settings=settings)

    requests, cursor, skipped = evaluate(None, settings=settings)

    assert requests == [] and cursor is not None
    assert skipped == (
        "1 refresh(es) found no new, restored or renamed table of a connection with auto_scan"
    )


def test_scan_schedule_fans_out_one_changed_only_scan_per_due_connection(
    store: CatalogueStore, shop_uri: str
) -> None:
    due = store.add_connection(
        alias="due", connection_uri=shop_uri, scan_schedule="*/15 * * * *"
    ).id
    store.add_connection(alias="nightly", connection_uri=shop_uri, scan_schedule="0 3 * * *")
    store.add_connection(alias="refreshed", connection_uri=shop_uri, refresh_schedule="* * * * *")

    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=at(10, 15),
            resources=RESOURCES,
            repository_def=defs().get_repository_def(),
        )
        [request] = scan_connections_on_schedule.evaluate_tick(context).run_requests
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=at(10, 7),
            resources=RESOURCES,
            repository_def=defs().get_repository_def(),
        )
        skipped = scan_connections_on_schedule.evaluate_tick(context).skip_message

    assert request.run_key == f"{due}@2026-03-02T10:15Z"
    assert (request.tags[CONNECTION_TAG], request.tags[TRIGGER_TAG]) == (due, "schedule")
    config = request.run_config["ops"]["start_scan"]["config"]
    assert (config["db_connection_id"], config["changed_only"]) == (due, True)
    assert skipped == (
        "2 connections scheduled, none due until 2026-03-02 10:15 UTC"
        " (due: */15 * * * *, next 2026-03-02 10:15 UTC; nightly: 0 3 * * *, next 2026-03-03 03:00 UTC)"
    )


def test_connection_api_takes_auto_scan_and_scan_schedule_and_refuses_a_bad_cron(
    tdsync_env: dict[str, str], shop_uri: str, settings: Settings
) -> None:
    with TestClient(create_app(settings)) as client:
        url = "/api/v1/database-connections"
        body = {"alias": "shop", "connection_uri": shop_uri, "auto_scan": True}
        created = client.post(url, json={**body, "scan_schedule": "0 * * * *"})
        assert created.status_code == 201, created.text
        conn = created.json()
        assert (conn["auto_scan"], conn["scan_schedule"]) == (True, "0 * * * *")
        assert conn["data_max_age_s"] == 7 * 86_400

        changed = client.put(
            f"{url}/{conn['id']}", json={"auto_scan": False, "scan_schedule": None}
        )
        assert (changed.json()["auto_scan"], changed.json()["scan_schedule"]) == (False, None)

        bad = client.put(f"{url}/{conn['id']}", json={"scan_schedule": "every hour"})
        assert bad.status_code == 422 and bad.json()["error_code"] == "validation_error"
        assert "scan_schedule" in bad.text
