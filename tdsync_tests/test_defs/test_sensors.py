"""Sensors: a failed or cancelled scan settles its rows and lease; partitions follow connections."""

import dagster as dg
import pytest

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.defs.partitions import CONNECTIONS
from tdsync.defs.resources import StoreResource
from tdsync.defs.sensors import (
    SCAN_JOB,
    check_table_descriptions,
    settle_cancelled_runs,
    settle_failed_runs,
    sync_connection_partitions,
)
from tdsync.defs.tags import CONNECTION_TAG
from tdsync.domain.models import Status, utcnow
from tdsync.store import CatalogueStore

RESOURCES = {"catalogue": StoreResource()}


@dg.op
def scan_that_breaks() -> None:
    raise dg.Failure(description="reading sales.orders failed: permission denied")


@dg.op
def scan_that_leaks() -> None:
    raise RuntimeError("could not connect to postgresql://reader:hunter2@db.internal:5432/sales")


@dg.job(name=SCAN_JOB)
def stand_in_scan() -> None:
    """Ends like a scan run that fails; the sensors only look at its name and tags."""
    scan_that_breaks()


@pytest.fixture
def connection(store: CatalogueStore, sqlite_path) -> str:
    conn = store.add_connection(alias="sales", connection_uri=f"sqlite:///{sqlite_path}")
    for name in ("orders", "customers", "refunds", "invoices"):
        store.descriptions.insert_one(
            {
                "db_connection_id": conn.id,
                "schema_name": "main",
                "table_name": name,
                "status": Status.NOT_SCANNED.value,
            }
        )
    return conn.id


def synchronizing(store: CatalogueStore, table: str, scan_run_id: str | None) -> None:
    store.descriptions.update_one(
        {"table_name": table},
        {"$set": {"status": Status.SYNCHRONIZING.value, "scan_run_id": scan_run_id}},
    )


def statuses(store: CatalogueStore, connection: str) -> dict[str, tuple[str, str | None]]:
    docs = store.descriptions.find({"db_connection_id": connection})
    return {d["table_name"]: (d["status"], d.get("error_message")) for d in docs}


def failed_scan(instance: dg.DagsterInstance, connection: str) -> dg.ExecuteInProcessResult:
    return stand_in_scan.execute_in_process(
        instance=instance, tags={CONNECTION_TAG: connection}, raise_on_error=False
    )


def settle_failure(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
    """Run the settle_failed_runs sensor on the failure of `result`'s run."""
    context = dg.build_run_status_sensor_context(
        sensor_name="settle_failed_runs",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources=RESOURCES,
    ).for_run_failure()
    settle_failed_runs(context)


def test_failed_scan_turns_its_synchronizing_rows_failed_with_the_run_error(
    store, connection, settings: Settings
):
    instance = runs.instance(settings)
    result = failed_scan(instance, connection)
    synchronizing(store, "orders", result.run_id)
    synchronizing(store, "customers", None)  # marked before the run claimed it
    synchronizing(store, "refunds", "another-scan-request")
    store.acquire_connection_lease(
        connection, holder=result.run_id, kind=SCAN_JOB, ttl_s=60, now=utcnow()
    )

    settle_failure(instance, result)

    error = "scan run failed: reading sales.orders failed: permission denied"
    assert statuses(store, connection) == {
        "orders": ("FAILED", error),
        "customers": ("FAILED", error),
        "refunds": ("SYNCHRONIZING", None),
        "invoices": ("NOT_SCANNED", None),
    }
    lease = store.connection_lease(connection)
    assert lease["holder"] is None
    assert lease["last"] == {**lease["last"], "holder": result.run_id, "succeeded": False}


def test_cancelled_scan_turns_its_synchronizing_rows_failed(store, connection, settings: Settings):
    instance = runs.instance(settings)
    run = instance.create_run_for_job(stand_in_scan, tags={CONNECTION_TAG: connection})
    synchronizing(store, "invoices", run.run_id)
    instance.report_run_canceling(run)
    instance.report_run_canceled(run)
    [cancelled] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_CANCELED)

    context = dg.build_run_status_sensor_context(
        sensor_name="settle_cancelled_runs",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run.run_id),
        dagster_event=cancelled.dagster_event,
        resources=RESOURCES,
    )
    settle_cancelled_runs(context)

    status, error = statuses(store, connection)["invoices"]
    assert status == "FAILED"
    assert error == f"scan run {run.run_id} was cancelled before it finished"


def test_run_error_written_to_rows_never_holds_the_password(store, sqlite_path, settings: Settings):
    conn = store.add_connection(
        alias="leaky", connection_uri="postgresql://reader:hunter2@db.internal:5432/sales"
    )
    store.descriptions.insert_one(
        {
            "db_connection_id": conn.id,
            "schema_name": "public",
            "table_name": "orders",
            "status": Status.SYNCHRONIZING.value,
        }
    )

    @dg.job(name=SCAN_JOB)
    def leaking_scan() -> None:
        scan_that_leaks()

    instance = runs.instance(settings)
    result = leaking_scan.execute_in_process(
        instance=instance, tags={CONNECTION_TAG: conn.id}, raise_on_error=False
    )
    settle_failure(instance, result)

    status, error = statuses(store, conn.id)["orders"]
    assert status == "FAILED"
    assert error == "scan run failed: RuntimeError: could not connect to *****"
    assert "hunter2" not in error


def test_failed_refresh_leaves_descriptions_alone(store, connection, settings: Settings):
    instance = runs.instance(settings)
    synchronizing(store, "orders", "a-scan-in-progress")

    @dg.job(name="refresh_table_descriptions")
    def stand_in_refresh() -> None:
        scan_that_breaks()

    result = stand_in_refresh.execute_in_process(
        instance=instance, tags={CONNECTION_TAG: connection}, raise_on_error=False
    )
    settle_failure(instance, result)

    assert statuses(store, connection)["orders"] == ("SYNCHRONIZING", None)


def test_partitions_follow_connections_by_alias_and_skip_when_nothing_changed(store, sqlite_path):
    store.add_connection(alias="a", connection_uri=f"sqlite:///{sqlite_path}")
    b = store.add_connection(alias="b", connection_uri=f"sqlite:///{sqlite_path}").id
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(CONNECTIONS.name, ["removed-connection", "a"])

        def tick(cursor: str | None):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=RESOURCES)
            result = sync_connection_partitions.evaluate_tick(context)
            for request in result.dynamic_partitions_requests:  # as the daemon would
                if isinstance(request, dg.AddDynamicPartitionsRequest):
                    instance.add_dynamic_partitions(CONNECTIONS.name, request.partition_keys)
                else:
                    for key in request.partition_keys:
                        instance.delete_dynamic_partition(CONNECTIONS.name, key)
            return result

        first = tick(None)
        after_first = sorted(instance.get_dynamic_partitions(CONNECTIONS.name))
        second = tick(first.cursor)
        store.update_connection(b, alias="b-renamed")
        renamed = tick(second.cursor)
        after_rename = sorted(instance.get_dynamic_partitions(CONNECTIONS.name))
        store.delete_connection(b)
        third = tick(renamed.cursor)
        after_third = instance.get_dynamic_partitions(CONNECTIONS.name)

    added, deleted = first.dynamic_partitions_requests
    assert (added.partition_keys, deleted.partition_keys) == (["b"], ["removed-connection"])
    assert after_first == ["a", "b"]
    assert second.skip_message == "partitions already match the 2 connection(s)"
    assert second.dynamic_partitions_requests == []
    assert after_rename == ["a", "b-renamed"]
    [deleted_b] = third.dynamic_partitions_requests
    assert deleted_b.partition_keys == ["b-renamed"]
    assert after_third == ["a"]


def test_check_sensor_reports_the_checks_only_when_their_outcome_changes(store, connection):
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=RESOURCES)
            return check_table_descriptions.evaluate_tick(context)

        healthy = tick(None)
        unchanged = tick(healthy.cursor)
        store.descriptions.update_one(
            {"table_name": "orders"},
            {"$set": {"status": Status.FAILED.value, "error_message": "permission denied"}},
        )
        failing = tick(unchanged.cursor or healthy.cursor)

    assert {(e.check_name, e.passed) for e in healthy.asset_events} == {
        ("no_failed_descriptions", True),
        ("no_scan_past_its_lease", True),
    }
    assert unchanged.asset_events == []
    assert unchanged.skip_message.startswith("unchanged since last reported: no table description")
    failed = {e.check_name: e for e in failing.asset_events}["no_failed_descriptions"]
    assert not failed.passed
    assert failed.description.startswith("1 table description(s) FAILED in sales")
    assert failing.cursor != healthy.cursor
