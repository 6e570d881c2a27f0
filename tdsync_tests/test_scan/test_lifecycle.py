"""The scan job's lifecycle: SYNCHRONIZING -> SCANNED or FAILED, people's work kept, drift, leases."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.domain.errors import InvalidDatabaseConnection, TableDescriptionNotFound
from tdsync.domain.models import Status, utcnow
from tdsync.store import CatalogueStore
from tdsync_tests.test_scan.conftest import SQLITE_SHOP, run_statements


def sqlite_source(path: Path, *statements: str) -> str:
    run_statements(f"sqlite:///{path}", list(statements))
    return f"sqlite:///{path}"


def catalogue(
    store: CatalogueStore, uri: str, schemas: list[str] | None = None, *, settings: Settings
) -> str:
    """Register a connection and refresh it: its tables are NOT_SCANNED descriptions."""
    connection_id = store.add_connection(alias="shop", connection_uri=uri, schemas=schemas).id
    runs.refresh(connection_id, trigger="cli", settings=settings)
    return connection_id


def by_name(store: CatalogueStore, connection_id: str) -> dict:
    return {d.table_name: d for d in store.list_descriptions(connection_id)}


def raw(store: CatalogueStore, connection_id: str, table: str) -> dict:
    return store.descriptions.find_one({"db_connection_id": connection_id, "table_name": table})


def step_output_metadata(run_id: str, step: str = "scan_tables", *, settings: Settings) -> dict:
    instance = runs.instance(settings)
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_OUTPUT
    ).records:
        event = record.event_log_entry.dagster_event
        if event.step_key == step:
            return {k: v.value for k, v in event.step_output_data.metadata.items()}
    raise AssertionError(f"no output of {step} in run {run_id}")


def test_scan_settles_every_row_scanned_with_its_sync_time_and_no_error(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    connection_id = catalogue(
        store, sqlite_source(tmp_path / "shop.db", *SQLITE_SHOP), settings=settings
    )
    store.descriptions.update_one(
        {"db_connection_id": connection_id, "table_name": "orders"},
        {"$set": {"status": "FAILED", "error_message": "an earlier failure"}},
    )
    before = utcnow()
    seen = []
    summary = runs.scan(connection_id, trigger="cli", on_progress=seen.append, settings=settings)
    assert summary["tables"] == summary["scanned"] == 5 and summary["failed"] == 0
    for desc in by_name(store, connection_id).values():
        assert desc.status == Status.SCANNED
        assert desc.error_message is None
        assert desc.last_schema_sync >= before
        assert desc.columns and desc.table_schema
    leftovers = store.descriptions.count_documents(
        {"$or": [{"scan_run_id": {"$exists": True}}, {"scan_lease_expires_at": {"$exists": True}}]}
    )
    assert leftovers == 0
    assert [p.done for p in seen] == [1, 2, 3, 4, 5] and seen[-1].total == 5


def test_scan_is_a_dagster_run_tagged_with_connection_and_trigger(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    connection_id = catalogue(
        store, sqlite_source(tmp_path / "shop.db", *SQLITE_SHOP), settings=settings
    )
    runs.scan(
        connection_id,
        trigger="cli",
        table_names=["orders"],
        run_id=(run_id := str(uuid.uuid4())),
        settings=settings,
    )
    run = runs.instance(settings).get_run_by_id(run_id)
    assert run.job_name == "scan_table_descriptions" and run.is_success
    assert run.tags[CONNECTION_TAG] == connection_id and run.tags[TRIGGER_TAG] == "cli"
    metadata = step_output_metadata(run_id, settings=settings)
    assert metadata["scanned"] == 1 and metadata["failed"] == 0 and metadata["duration_s"] >= 0


def test_one_failing_table_does_not_stop_the_others(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    uri = sqlite_source(
        tmp_path / "broken.db",
        "CREATE TABLE kept (id INTEGER PRIMARY KEY, name TEXT)",
        "CREATE TABLE gone (id INTEGER)",
        "CREATE VIEW broken AS SELECT id FROM gone",
        "CREATE TABLE also_kept (id INTEGER)",
    )
    connection_id = catalogue(store, uri, settings=settings)
    run_statements(uri, ["DROP TABLE gone"])  # the view now names a table that is not there
    summary = runs.scan(
        connection_id, trigger="cli", table_names=["kept", "broken", "also_kept"], settings=settings
    )
    assert (summary["scanned"], summary["failed"]) == (2, 1)
    rows = by_name(store, connection_id)
    assert rows["kept"].status == rows["also_kept"].status == Status.SCANNED
    assert rows["broken"].status == Status.FAILED
    assert "no such table" in rows["broken"].error_message


def test_people_descriptions_survive_a_rescan_and_drift_is_recorded(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    uri = sqlite_source(
        tmp_path / "drift.db",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER, note TEXT, kind TEXT)",
        "INSERT INTO items VALUES (1, 5, 'a', 'tool'), (2, 7, 'b', 'toy')",
    )
    connection_id = catalogue(store, uri, settings=settings)
    runs.scan(connection_id, trigger="cli", settings=settings)
    item = by_name(store, connection_id)["items"]
    assert [c.name for c in item.columns] == ["id", "qty", "note", "kind"]
    assert item.columns[3].categories == ["tool", "toy"]
    store.update_description(
        item.id,
        {
            "description": "Things we sell",
            "metadata": {"owner": "ops"},
            "columns.1.description": "how many",
            "columns.3.description": "what sort",
            "columns.3.categories": ["tool", "toy", "game"],  # a person knows of a third
        },
    )
    run_statements(
        uri,
        [
            "DROP TABLE items",
            "CREATE TABLE items (id INTEGER PRIMARY KEY, qty TEXT, kind TEXT, added INTEGER)",
            "INSERT INTO items VALUES (1, '5', 'tool', 1)",
        ],
    )

    summary = runs.scan(
        connection_id, trigger="cli", run_id=(run_id := str(uuid.uuid4())), settings=settings
    )

    item = store.get_description(item.id)
    assert item.description == "Things we sell" and item.metadata == {"owner": "ops"}
    cols = {c.name: c for c in item.columns}
    assert list(cols) == ["id", "qty", "kind", "added"]  # note dropped, added added
    assert cols["qty"].description == "how many" and cols["qty"].data_type == "TEXT"
    assert cols["kind"].description == "what sort"
    assert cols["kind"].categories == ["tool", "toy", "game"]  # people's list is kept
    assert cols["added"].description is None
    (change,) = item.schema_changes
    assert (change.added, change.removed, change.type_changed) == (["added"], ["note"], ["qty"])
    assert summary["drift"] == 1
    assert step_output_metadata(run_id, settings=settings)["drifted_tables"] == [
        {"table": "main.items", "added": ["added"], "removed": ["note"], "type_changed": ["qty"]}
    ]

    runs.scan(
        connection_id, trigger="cli", settings=settings
    )  # nothing changed since: no new drift entry
    assert len(store.get_description(item.id).schema_changes) == 1


def test_scan_owned_categories_follow_the_data(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    uri = sqlite_source(
        tmp_path / "cats.db",
        "CREATE TABLE t (kind TEXT)",
        "INSERT INTO t VALUES ('a'), ('b')",
    )
    connection_id = catalogue(store, uri, settings=settings)
    runs.scan(connection_id, trigger="cli", settings=settings)
    run_statements(uri, ["INSERT INTO t VALUES ('c')"])
    runs.scan(connection_id, trigger="cli", settings=settings)
    assert by_name(store, connection_id)["t"].columns[0].categories == ["a", "b", "c"]


def test_expired_scan_leases_turn_failed_when_the_next_scan_starts(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    connection_id = catalogue(
        store, sqlite_source(tmp_path / "shop.db", *SQLITE_SHOP), settings=settings
    )
    stale = by_name(store, connection_id)["customers"]
    store.claim_for_scan(
        connection_id,
        [stale.id],
        run_id=str(uuid.uuid4()),
        lease_expires_at=utcnow() - timedelta(seconds=1),
    )
    summary = runs.scan(connection_id, trigger="cli", table_names=["orders"], settings=settings)
    assert summary["expired_leases"] == 1
    rows = by_name(store, connection_id)
    assert rows["customers"].status == Status.FAILED
    assert "lease expired" in rows["customers"].error_message
    assert rows["orders"].status == Status.SCANNED


def test_deprecated_rows_are_never_scanned(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    uri = sqlite_source(
        tmp_path / "d.db", "CREATE TABLE a (x INTEGER)", "CREATE TABLE b (x INTEGER)"
    )
    connection_id = catalogue(store, uri, settings=settings)
    run_statements(uri, ["DROP TABLE b"])
    runs.refresh(connection_id, trigger="cli", settings=settings)
    summary = runs.scan(connection_id, trigger="cli", settings=settings)
    assert summary["tables"] == 1
    assert by_name(store, connection_id)["b"].status == Status.DEPRECATED


def test_unknown_table_names_and_ids_are_not_found(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    connection_id = catalogue(
        store, sqlite_source(tmp_path / "shop.db", *SQLITE_SHOP), settings=settings
    )
    with pytest.raises(TableDescriptionNotFound) as names:
        store.scan_targets(connection_id=connection_id, table_names=["orders", "nope"])
    assert names.value.detail == {"table_names": ["nope"]}
    with pytest.raises(TableDescriptionNotFound) as ids:
        store.scan_targets(ids=["0123456789abcdef01234567"])
    assert ids.value.detail == {"ids": ["0123456789abcdef01234567"]}
    both = store.scan_targets(connection_id=connection_id, table_names=["main.orders", "customers"])
    assert [t.table_name for t in both] == ["customers", "orders"]


def test_no_password_reaches_error_messages_exceptions_or_dagster_events(
    store: CatalogueStore, sources_of, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    password = "S3cret-pw-7781"
    url = sources_of("postgresql").empty()
    run_statements(
        url,
        [
            "CREATE TABLE fine (id integer PRIMARY KEY)",
            "CREATE VIEW divides AS SELECT x / 0 AS y FROM (VALUES (1)) t(x)",
        ],
    )
    # Trust authentication accepts any password: the URI can carry one that must never leak.
    uri = url.replace("postgres@", f"postgres:{password}@")
    connection_id = catalogue(store, uri, settings=settings)
    run_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    summary = runs.scan(connection_id, trigger="cli", run_id=run_ids[0], settings=settings)
    assert (summary["scanned"], summary["failed"]) == (1, 1)
    assert "division by zero" in by_name(store, connection_id)["divides"].error_message

    # The source becomes unreachable: every claimed row fails, with the driver's reason.
    store.update_connection(connection_id, connection_uri=uri.replace(":5432/", ":1/"))
    with pytest.raises(InvalidDatabaseConnection) as unreachable:
        runs.scan(connection_id, trigger="cli", run_id=run_ids[1], settings=settings)
    rows = by_name(store, connection_id)
    assert {d.status for d in rows.values()} == {Status.FAILED}
    assert all("cannot be read" in d.error_message for d in rows.values())

    seen = [json.dumps([d.model_dump(mode="json") for d in rows.values()])]
    seen += [str(unreachable.value), json.dumps(unreachable.value.detail), caplog.text]
    instance = runs.instance(settings)
    for run_id in run_ids:
        seen += [str(entry) for entry in instance.all_logs(run_id)]
    assert all(password not in text for text in seen)


def test_a_second_claim_by_the_same_run_rewrites_only_rows_short_of_lease(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    """request_scan claims the rows, then the run it starts claims them again: rows that run
    holds with half their lease left are not written twice (each write costs the store)."""
    connection_id = catalogue(
        store, sqlite_source(tmp_path / "shop.db", *SQLITE_SHOP), settings=settings
    )
    run_id = str(uuid.uuid4())

    def leases() -> set[float]:
        docs = store.descriptions.find({"db_connection_id": connection_id, "scan_run_id": run_id})
        return {round(d["scan_lease_expires_at"].timestamp()) for d in docs}

    first = utcnow() + timedelta(seconds=900)
    claimed = store.claim_for_scan(connection_id, None, run_id=run_id, lease_expires_at=first)
    again = store.claim_for_scan(
        connection_id, None, run_id=run_id, lease_expires_at=first + timedelta(seconds=60)
    )
    assert [t.id for t in again] == [t.id for t in claimed]
    assert {t.status for t in again} == {Status.SYNCHRONIZING}
    assert leases() == {round(first.timestamp())}
    longer = utcnow() + timedelta(seconds=3600)  # the rows have less than half of it left
    store.claim_for_scan(connection_id, None, run_id=run_id, lease_expires_at=longer)
    assert leases() == {round(longer.timestamp())}


def test_scan_options_reach_the_job_as_its_run_config(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    uri = sqlite_source(
        tmp_path / "opts.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, kind TEXT)",
        "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
    )
    connection_id = catalogue(store, uri, settings=settings)

    runs.scan(
        connection_id,
        trigger="cli",
        options={"example_rows": 0, "max_categories": 0},
        settings=settings,
    )

    (row,) = store.list_descriptions(connection_id)
    assert row.status == Status.SCANNED and [c.name for c in row.columns] == ["id", "kind"]
    assert row.examples == [] and row.columns[1].categories is None
    runs.scan(
        connection_id, trigger="cli", settings=settings
    )  # the defaults: examples and categories
    (row,) = store.list_descriptions(connection_id)
    assert len(row.examples) == 2 and row.columns[1].categories == ["a", "b"]
