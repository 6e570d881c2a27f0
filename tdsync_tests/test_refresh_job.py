"""The refresh job end to end: tdsync.defs.runs.refresh on real sources, recorded on the Dagster instance."""

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from bson import ObjectId

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.domain.errors import ConnectionNotFound, EmptyDatabase, InvalidDatabaseConnection
from tdsync.domain.models import utcnow
from tdsync.domain.refresh_rules import plan_refresh
from tdsync.sources.listing import list_live_tables
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import PG_ADMIN_URL, _server_database, execute


def sql(path: Path, script: str) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(script)


def statuses(store: CatalogueStore, connection_id: str) -> dict[str, str]:
    return {
        f"{d.schema_name}.{d.table_name}": d.status.value
        for d in store.list_descriptions(connection_id)
    }


def snapshot(store: CatalogueStore, connection_id: str) -> list[dict[str, Any]]:
    """Every stored field of a connection's descriptions, as Mongo holds them."""
    return list(store.descriptions.find({"db_connection_id": connection_id}).sort("_id", 1))


def refresh_directly(store: CatalogueStore, connection_id: str, *, settings: Settings) -> None:
    """The refresh without a Dagster run: for setting a scene quickly (runs cost ~0.5 s each)."""
    conn = store.get_connection(connection_id)
    listing = list_live_tables(store.connection_uri(connection_id), conn.schemas, settings=settings)
    now = utcnow()
    store.apply_refresh(
        connection_id, plan_refresh(store.stored_tables(connection_id), listing, now), now
    )


def in_threads(calls: list, *, deadline_s: float = 120) -> list:
    """Run the calls at once in daemon threads; a hung call fails the test instead of hanging it."""
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # reported below, with the others
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for t in threads:
        t.start()
    end = time.monotonic() + deadline_s
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a refresh hung (deadlock?)"
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return results


def recorded_runs(connection_id: str, *, settings: Settings) -> list[dg.DagsterRun]:
    return runs.instance(settings).get_runs(
        filters=dg.RunsFilter(tags={CONNECTION_TAG: connection_id})
    )


@pytest.fixture
def shop(store: CatalogueStore, sqlite_path: Path) -> str:
    sql(
        sqlite_path,
        """
        CREATE TABLE customers (id INTEGER PRIMARY KEY);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id));
        CREATE TABLE "OrderItems" (id INTEGER PRIMARY KEY);
        CREATE VIEW big_orders AS SELECT * FROM orders;
        """,
    )
    return store.add_connection(alias="shop", connection_uri=f"sqlite:///{sqlite_path}").id


def test_refresh_is_a_dagster_run_with_tags_and_counts(
    store: CatalogueStore, shop: str, settings: Settings
) -> None:
    summary = runs.refresh(shop, trigger="cli", settings=settings)
    assert {k: summary[k] for k in ("added", "deprecated", "restored", "unchanged")} == {
        "added": 4,
        "deprecated": 0,
        "restored": 0,
        "unchanged": 0,
    }
    assert statuses(store, shop) == {
        "main.OrderItems": "NOT_SCANNED",
        "main.big_orders": "NOT_SCANNED",
        "main.customers": "NOT_SCANNED",
        "main.orders": "NOT_SCANNED",
    }

    (run,) = recorded_runs(shop, settings=settings)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.job_name == "refresh_table_descriptions"
    assert run.tags[CONNECTION_TAG] == shop
    assert run.tags[TRIGGER_TAG] == "cli"
    outputs = (
        runs.instance(settings)
        .get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)
        .records
    )
    (written,) = [
        r.event_log_entry.dagster_event
        for r in outputs
        if r.event_log_entry.dagster_event.step_key == "table_descriptions.write_statuses"
    ]
    metadata = {k: v.value for k, v in written.step_output_data.metadata.items()}
    assert {k: metadata[k] for k in ("added", "deprecated", "restored", "unchanged")} == {
        "added": 4,
        "deprecated": 0,
        "restored": 0,
        "unchanged": 0,
    }


def test_dropped_table_is_deprecated_and_restored_with_its_description(
    store: CatalogueStore, shop: str, sqlite_path: Path, settings: Settings
) -> None:
    runs.refresh(shop, trigger="cli", settings=settings)
    (orders,) = store.list_descriptions(shop, table_name="orders")
    store.update_description(orders.id, {"description": "One row per order."})

    sql(sqlite_path, "DROP VIEW big_orders; DROP TABLE orders; CREATE TABLE refunds (id INT);")
    summary = runs.refresh(shop, trigger="cli", settings=settings)
    assert (summary["added"], summary["deprecated"], summary["unchanged"]) == (1, 2, 2)
    assert statuses(store, shop) == {
        "main.OrderItems": "NOT_SCANNED",
        "main.big_orders": "DEPRECATED",
        "main.customers": "NOT_SCANNED",
        "main.orders": "DEPRECATED",
        "main.refunds": "NOT_SCANNED",
    }

    sql(sqlite_path, "CREATE TABLE orders (id INTEGER PRIMARY KEY);")
    summary = runs.refresh(shop, trigger="webhook", settings=settings)
    assert (summary["restored"], summary["deprecated"]) == (1, 0)
    restored = store.get_description(orders.id)
    assert restored.status.value == "NOT_SCANNED"
    assert restored.description == "One row per order."


def test_empty_source_with_stored_descriptions_is_empty_database_and_changes_nothing(
    store: CatalogueStore, shop: str, sqlite_path: Path, settings: Settings
) -> None:
    refresh_directly(store, shop, settings=settings)
    before = snapshot(store, shop)
    sql(
        sqlite_path,
        'DROP VIEW big_orders; DROP TABLE orders; DROP TABLE customers; DROP TABLE "OrderItems";',
    )
    with pytest.raises(EmptyDatabase) as err:
        runs.refresh(shop, trigger="cli", settings=settings)
    assert err.value.detail["schema_name"] == "main"
    assert snapshot(store, shop) == before
    failed = runs.instance(settings).get_run_by_id(err.value.detail["run_id"])
    assert failed.status == dg.DagsterRunStatus.FAILURE


def test_failed_run_reads_as_the_error_with_its_code_and_what_to_do(
    store: CatalogueStore, shop: str, sqlite_path: Path, settings: Settings
) -> None:
    refresh_directly(store, shop, settings=settings)
    sql(
        sqlite_path,
        'DROP VIEW big_orders; DROP TABLE orders; DROP TABLE customers; DROP TABLE "OrderItems";',
    )
    with pytest.raises(EmptyDatabase) as err:
        runs.refresh(shop, trigger="cli", settings=settings)

    [failure] = (
        runs.instance(settings)
        .get_records_for_run(err.value.detail["run_id"], of_type=dg.DagsterEventType.STEP_FAILURE)
        .records
    )
    data = failure.event_log_entry.dagster_event.step_failure_data.user_failure_data
    assert data.description == err.value.message
    assert data.metadata["error_code"].value == "empty_database"
    assert data.metadata["what_to_do"].value.startswith("Nothing was deprecated.")

    # What the UI shows (its GraphQL): the code, message and what to do, no Python stack trace.
    [shown] = [
        event
        for event in graphql_run_events(err.value.detail["run_id"], settings=settings)
        if event["__typename"] == "ExecutionStepFailureEvent"
    ]
    assert shown["error"]["stack"] == []
    assert shown["error"]["message"].startswith(f"[empty_database] {err.value.message}")
    assert "What to do: Nothing was deprecated." in shown["error"]["message"]
    assert {e["label"] for e in shown["failureMetadata"]["metadataEntries"]} >= {
        "error_code",
        "what_to_do",
    }


RUN_EVENTS = """query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection {
  events { __typename ... on ExecutionStepFailureEvent {
    error { message stack } failureMetadata { metadataEntries { label } } } } } } }"""


def graphql_run_events(run_id: str, *, settings: Settings) -> list[dict]:
    """A run's events as the Dagster UI reads them, through the webserver's GraphQL schema."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    with runs.workspace_request(runs.instance(settings)) as request:
        result = execute_dagster_graphql(request, RUN_EVENTS, {"runId": run_id})
    assert not result.errors, result.errors
    return result.data["logsForRun"]["events"]


def test_missing_sqlite_file_is_invalid_connection_and_never_created(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    missing = tmp_path / "nope" / "shop.db"
    cid = store.add_connection(alias="typo", connection_uri=f"sqlite:///{missing}").id
    with pytest.raises(InvalidDatabaseConnection) as err:
        runs.refresh(cid, trigger="cli", settings=settings)
    assert err.value.error_code == "invalid_database_connection"
    assert not missing.exists() and not missing.parent.exists()
    assert snapshot(store, cid) == []


def test_unknown_connection_is_not_found(store: CatalogueStore, settings: Settings) -> None:
    with pytest.raises(ConnectionNotFound) as err:
        runs.refresh(str(ObjectId()), trigger="cli", settings=settings)
    assert err.value.http_status == 404


# -- PostgreSQL: schemas, unreachable source ---------------------------------------------------


@pytest.fixture(scope="module")
def pg_two_schemas() -> Iterator[str]:
    for url in _server_database(PG_ADMIN_URL, "PostgreSQL at 127.0.0.1:5432"):
        execute(
            url,
            "CREATE TABLE users (id int)",
            'CREATE TABLE "Users" (id int)',
            "CREATE MATERIALIZED VIEW user_count AS SELECT count(*) AS n FROM users",
            "CREATE SCHEMA sales",
            "CREATE TABLE sales.invoices (id int)",
            "CREATE VIEW sales.open_invoices AS SELECT * FROM sales.invoices",
        )
        yield url


def test_schema_removed_from_the_connection_is_deprecated(
    store: CatalogueStore, pg_two_schemas: str, settings: Settings
) -> None:
    cid = store.add_connection(
        alias="pg", connection_uri=pg_two_schemas, schemas=["public", "sales"]
    ).id
    refresh_directly(store, cid, settings=settings)
    assert len(snapshot(store, cid)) == 5
    store.update_connection(cid, schemas=["public"])
    refresh_directly(store, cid, settings=settings)
    assert statuses(store, cid) == {
        "public.Users": "NOT_SCANNED",
        "public.user_count": "NOT_SCANNED",
        "public.users": "NOT_SCANNED",
        "sales.invoices": "DEPRECATED",
        "sales.open_invoices": "DEPRECATED",
    }


def test_unreachable_source_fails_within_the_timeout_and_changes_nothing(
    store: CatalogueStore,
    pg_two_schemas: str,
    silent_port: int,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
) -> None:
    cid = store.add_connection(alias="pg", connection_uri=pg_two_schemas).id
    refresh_directly(store, cid, settings=settings)
    before = snapshot(store, cid)

    store.update_connection(
        cid, connection_uri=f"postgresql://postgres:s3cr3tpw@127.0.0.1:{silent_port}/shop"
    )
    monkeypatch.setenv("TDSYNC_SOURCE_TIMEOUT_S", "1")
    started = time.monotonic()
    with pytest.raises(InvalidDatabaseConnection) as err:
        runs.refresh(cid, trigger="cli", settings=settings)
    assert time.monotonic() - started < 6
    assert snapshot(store, cid) == before
    assert "s3cr3tpw" not in str(err.value.as_dict())
    # Nothing the run recorded for the Dagster UI holds the password either.
    logs = runs.instance(settings).all_logs(err.value.detail["run_id"])
    assert logs and not any("s3cr3tpw" in str(entry) for entry in logs)


# -- concurrency -------------------------------------------------------------------------------


# A deadlock would also block the main thread (logging's lock): the thread method still ends the
# session, and prints every thread's stack.
@pytest.mark.timeout(150, method="thread")
def test_twenty_concurrent_refreshes_leave_one_document_per_table_with_the_right_status(
    store: CatalogueStore, sqlite_path: Path, settings: Settings
) -> None:
    sql(sqlite_path, "".join(f"CREATE TABLE t{i:02d} (id INT);" for i in range(30)))
    cid = store.add_connection(alias="busy", connection_uri=f"sqlite:///{sqlite_path}").id
    refresh_directly(store, cid, settings=settings)
    sql(
        sqlite_path,
        "DROP TABLE t00; DROP TABLE t01;"
        + "".join(f"CREATE TABLE n{i} (id INT);" for i in range(5)),
    )

    summaries = in_threads([lambda: runs.refresh(cid, trigger="webhook", settings=settings)] * 20)

    assert all(s["added"] + s["unchanged"] + s["deprecated"] >= 33 for s in summaries)
    docs = snapshot(store, cid)
    keys = [(d["schema_name"], d["table_name"]) for d in docs]
    assert len(keys) == len(set(keys)) == 35  # no duplicates
    expected = {f"main.t{i:02d}": "NOT_SCANNED" for i in range(2, 30)}
    expected |= {"main.t00": "DEPRECATED", "main.t01": "DEPRECATED"}
    expected |= {f"main.n{i}": "NOT_SCANNED" for i in range(5)}
    assert statuses(store, cid) == expected
    recorded = recorded_runs(cid, settings=settings)
    assert recorded and all(r.status == dg.DagsterRunStatus.SUCCESS for r in recorded)


@pytest.mark.timeout(150, method="thread")
def test_refreshes_of_several_connections_run_at_once_in_one_process(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    # Runs of different connections overlap (API threads). This once deadlocked in logging
    # (Dagster's per-run dictConfig) and raced creating the fresh instance's SQLite tables.
    ids = []
    for k in range(3):
        path = tmp_path / f"source{k}.db"
        sql(path, "".join(f"CREATE TABLE c{k}_t{i} (id INT);" for i in range(k + 1)))
        ids.append(store.add_connection(alias=f"s{k}", connection_uri=f"sqlite:///{path}").id)

    summaries = in_threads(
        [lambda cid=cid: runs.refresh(cid, trigger="api", settings=settings) for cid in ids]
    )

    assert [s["added"] for s in summaries] == [1, 2, 3]
    for k, cid in enumerate(ids):
        assert sorted(statuses(store, cid)) == [f"main.c{k}_t{i}" for i in range(k + 1)]
        assert len(recorded_runs(cid, settings=settings)) == 1


def test_confirmed_empty_schema_run_records_its_config_and_deprecates_once(
    store: CatalogueStore, shop: str, sqlite_path: Path, settings: Settings
) -> None:
    refresh_directly(store, shop, settings=settings)
    sql(
        sqlite_path,
        'DROP VIEW big_orders; DROP TABLE orders; DROP TABLE customers; DROP TABLE "OrderItems";',
    )
    with pytest.raises(EmptyDatabase) as err:
        runs.refresh(shop, trigger="cli", settings=settings)
    failed = runs.instance(settings).get_run_by_id(err.value.detail["run_id"])
    [failure] = (
        runs.instance(settings)
        .get_records_for_run(failed.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        .records
    )
    user = failure.event_log_entry.dagster_event.step_failure_data.user_failure_data

    summary = runs.refresh(shop, trigger="cli", allow_empty_schemas=["main"], settings=settings)

    assert "schema 'main' listed no tables or views" in user.description
    assert "allow_empty_schemas: [main]" in user.description
    assert "allow_empty_schemas" in user.metadata["what_to_do"].value
    assert summary["deprecated"] == 4
    assert set(statuses(store, shop).values()) == {"DEPRECATED"}
    confirmed = next(r for r in recorded_runs(shop, settings=settings) if r.run_config)
    assert confirmed.run_config == {
        "ops": {
            "table_descriptions": {
                "ops": {"diff_against_catalogue": {"config": {"allow_empty_schemas": ["main"]}}}
            }
        }
    }
    assert runs.refresh(shop, trigger="cli", settings=settings)["deprecated"] == 0


def test_a_partitions_materialization_shows_its_schedule_and_next_refresh(
    store: CatalogueStore, shop: str, settings: Settings
) -> None:
    store.update_connection(shop, refresh_schedule="30 2 * * *")
    runs.refresh(shop, trigger="cli", settings=settings)

    alias = store.get_connection(shop).alias
    [record] = (
        runs.instance(settings)
        .fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("table_descriptions"), asset_partitions=[alias]
            ),
            limit=1,
        )
        .records
    )
    metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}

    assert metadata["refresh_schedule"] == "30 2 * * * (UTC)"
    assert metadata["next_scheduled_refresh"].endswith(" 02:30 UTC")
    assert metadata["refreshed_at"].endswith(" UTC")
