"""The catalogue in the Dagster UI: a partition per connection, its materializations and checks."""

import sqlite3
from datetime import timedelta

import dagster as dg
import pytest

from tdsync.config.settings import Settings
from tdsync.definitions import defs
from tdsync.defs import runs
from tdsync.defs.assets import NO_FAILED, NO_STUCK_SCANS, TABLE_DESCRIPTIONS
from tdsync.defs.partitions import CONNECTIONS
from tdsync.domain.models import Status, utcnow
from tdsync.store import CatalogueStore


@pytest.fixture
def connection(store: CatalogueStore, sqlite_path) -> str:
    with sqlite3.connect(sqlite_path) as db:
        db.executescript(
            "CREATE TABLE orders (id INTEGER); CREATE TABLE users (id INTEGER);"
            "CREATE TABLE legacy (id INTEGER);"
        )
    return store.add_connection(alias="shop", connection_uri=f"sqlite:///{sqlite_path}").id


def check_job() -> dg.JobDefinition:
    """The checks as the Dagster UI runs them: the implicit asset job, checks only."""
    return (
        defs()
        .resolve_implicit_global_asset_job_def()
        .get_subset(
            asset_selection=set(),
            asset_check_selection={
                dg.AssetCheckKey(TABLE_DESCRIPTIONS, NO_FAILED),
                dg.AssetCheckKey(TABLE_DESCRIPTIONS, NO_STUCK_SCANS),
            },
        )
    )


def latest_materialization(instance: dg.DagsterInstance, connection: str) -> dg.EventLogRecord:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=TABLE_DESCRIPTIONS, asset_partitions=[connection]), limit=1
    ).records
    return records[0]


def test_each_refresh_materializes_its_connection_partition_with_counts_and_changes(
    store, connection, sqlite_path, settings: Settings
):
    runs.refresh(connection, trigger="cli", settings=settings)
    with sqlite3.connect(sqlite_path) as db:
        # Not legacy's structure: that would be legacy renamed (issue 17).
        db.executescript("DROP TABLE legacy; CREATE TABLE invoices (id INTEGER, total NUMERIC);")
    runs.refresh(connection, trigger="cli", settings=settings)
    instance = runs.instance(settings)

    assert instance.get_dynamic_partitions(CONNECTIONS.name) == ["shop"]  # by alias
    record = latest_materialization(instance, "shop")
    metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    assert record.partition_key == "shop"
    assert metadata["NOT_SCANNED"] == 3
    assert metadata["DEPRECATED"] == 1
    assert metadata["SCANNED"] == 0
    assert metadata["total"] == 4
    assert metadata["added"] == 1
    assert metadata["added_tables"] == ["main.invoices"]
    assert metadata["deprecated_tables"] == ["main.legacy"]
    assert metadata["restored_tables"] == []
    assert metadata["connection"] == "shop"


def test_checks_fail_on_failed_rows_and_on_scans_past_their_lease(
    store, connection, settings: Settings
):
    runs.refresh(connection, trigger="cli", settings=settings)
    store.descriptions.update_one(
        {"table_name": "orders"},
        {"$set": {"status": Status.FAILED.value, "error_message": "permission denied"}},
    )
    store.descriptions.update_one(
        {"table_name": "users"},
        {
            "$set": {
                "status": Status.SYNCHRONIZING.value,
                "scan_lease_expires_at": utcnow() - timedelta(minutes=1),
            }
        },
    )
    instance = runs.instance(settings)

    checked = check_job().execute_in_process(instance=instance)
    evaluations = {e.check_name: e for e in checked.get_asset_check_evaluations()}
    failed, stuck = evaluations[NO_FAILED], evaluations[NO_STUCK_SCANS]

    assert not failed.passed
    assert failed.severity == dg.AssetCheckSeverity.WARN
    assert failed.metadata["errors"].value == {"shop": {"main.orders": "permission denied"}}
    assert not stuck.passed
    assert stuck.severity == dg.AssetCheckSeverity.ERROR
    assert stuck.metadata["tables"].value == {"shop": ["main.users"]}
    assert stuck.description.startswith("1 table description(s) SYNCHRONIZING past their scan")
