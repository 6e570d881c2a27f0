"""Every sensor's decisions, fast: an in-memory store (tdsync_tests/fakes.py) behind the
`catalogue` resource and Dagster's own test instance and `build_*_context` helpers.

test_sensors.py, test_orphaned_runs.py and test_auto_scan.py run the same decisions against a
real store, real runs and real sources.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from tdsync.defs.assets import TABLE_DESCRIPTIONS
from tdsync.defs.partitions import CONNECTIONS
from tdsync.defs.sensors import (
    REFRESH_JOB,
    SCAN_JOB,
    check_table_descriptions,
    orphan_reason,
    scan_what_refreshes_found,
    settle_cancelled_runs,
    settle_failed_runs,
    settle_orphaned_runs,
    sync_connection_partitions,
    tables_to_scan,
)
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.domain.models import Status, utcnow
from tdsync_tests.fakes import FakeStore, fake_resource


@dg.op
def scan_that_breaks() -> None:
    raise dg.Failure(description="reading sales.orders failed: permission denied")


@dg.op
def scan_that_leaks() -> None:
    raise RuntimeError("could not connect to postgresql://reader:hunter2@db.internal:5432/sales")


@dg.job(name=SCAN_JOB)
def stand_in_scan() -> None:
    scan_that_breaks()


@dg.job(name=SCAN_JOB)
def leaking_scan() -> None:
    scan_that_leaks()


@dg.job(name=REFRESH_JOB)
def stand_in_refresh() -> None:
    scan_that_breaks()


@pytest.fixture
def instance() -> dg.DagsterInstance:
    """An in-memory instance: `instance_for_test`'s SQLite storage costs ~1 s a test."""
    return dg.DagsterInstance.ephemeral()


@pytest.fixture
def resources(fake_store: FakeStore) -> dict:
    return {"catalogue": fake_resource(fake_store, lease_wait_s=300)}


@pytest.fixture
def connection(fake_store: FakeStore) -> str:
    conn = fake_store.add_connection(alias="sales", connection_uri="sqlite:///sales.db")
    for name in ("orders", "customers", "refunds", "invoices"):
        fake_store.descriptions.insert_one(
            {
                "db_connection_id": conn.id,
                "schema_name": "main",
                "table_name": name,
                "status": Status.NOT_SCANNED.value,
            }
        )
    return conn.id


def synchronizing(store: FakeStore, table: str, scan_run_id: str | None) -> None:
    store.descriptions.update_one(
        {"table_name": table},
        {"$set": {"status": Status.SYNCHRONIZING.value, "scan_run_id": scan_run_id}},
    )


def statuses(store: FakeStore, connection: str) -> dict[str, tuple[str, str | None]]:
    docs = store.descriptions.find({"db_connection_id": connection})
    return {d["table_name"]: (d["status"], d.get("error_message")) for d in docs}


def settle_failure(instance, result, resources) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name="settle_failed_runs",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources=resources,
    ).for_run_failure()
    settle_failed_runs(context)


# -- settle_failed_runs, settle_cancelled_runs ---------------------------------------------------


def test_failed_scan_turns_its_synchronizing_rows_failed_and_frees_its_lease(
    fake_store, connection, instance, resources
):
    result = stand_in_scan.execute_in_process(
        instance=instance, tags={CONNECTION_TAG: connection}, raise_on_error=False
    )
    synchronizing(fake_store, "orders", result.run_id)
    synchronizing(fake_store, "customers", None)
    synchronizing(fake_store, "refunds", "another-scan-request")
    fake_store.acquire_connection_lease(
        connection, holder=result.run_id, kind=SCAN_JOB, ttl_s=60, now=utcnow()
    )

    settle_failure(instance, result, resources)

    error = "scan run failed: reading sales.orders failed: permission denied"
    assert statuses(fake_store, connection) == {
        "orders": ("FAILED", error),
        "customers": ("FAILED", error),
        "refunds": ("SYNCHRONIZING", None),
        "invoices": ("NOT_SCANNED", None),
    }
    lease = fake_store.connection_lease(connection)
    assert lease["holder"] is None
    assert lease["last"] == {**lease["last"], "holder": result.run_id, "succeeded": False}


def test_cancelled_scan_turns_its_synchronizing_rows_failed(
    fake_store, connection, instance, resources
):
    run = instance.create_run_for_job(stand_in_scan, tags={CONNECTION_TAG: connection})
    synchronizing(fake_store, "invoices", run.run_id)
    instance.report_run_canceling(run)
    instance.report_run_canceled(run)
    [cancelled] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_CANCELED)

    settle_cancelled_runs(
        dg.build_run_status_sensor_context(
            sensor_name="settle_cancelled_runs",
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(run.run_id),
            dagster_event=cancelled.dagster_event,
            resources=resources,
        )
    )

    assert statuses(fake_store, connection)["invoices"] == (
        "FAILED",
        f"scan run {run.run_id} was cancelled before it finished",
    )


def test_run_error_written_to_rows_never_holds_the_password(fake_store, instance, resources):
    conn = fake_store.add_connection(
        alias="leaky", connection_uri="postgresql://reader:hunter2@db.internal:5432/sales"
    )
    fake_store.descriptions.insert_one(
        {
            "db_connection_id": conn.id,
            "schema_name": "public",
            "table_name": "orders",
            "status": Status.SYNCHRONIZING.value,
        }
    )
    result = leaking_scan.execute_in_process(
        instance=instance, tags={CONNECTION_TAG: conn.id}, raise_on_error=False
    )
    settle_failure(instance, result, resources)

    status, error = statuses(fake_store, conn.id)["orders"]
    assert status == "FAILED"
    assert error == "scan run failed: RuntimeError: could not connect to *****"
    assert "hunter2" not in error


def test_failed_refresh_leaves_descriptions_alone(fake_store, connection, instance, resources):
    synchronizing(fake_store, "orders", "a-scan-in-progress")
    result = stand_in_refresh.execute_in_process(
        instance=instance, tags={CONNECTION_TAG: connection}, raise_on_error=False
    )
    settle_failure(instance, result, resources)

    assert statuses(fake_store, connection)["orders"] == ("SYNCHRONIZING", None)


def test_failed_scan_of_a_deleted_connection_still_frees_its_lease(
    fake_store, connection, instance, resources
):
    result = stand_in_scan.execute_in_process(
        instance=instance, tags={CONNECTION_TAG: connection}, raise_on_error=False
    )
    fake_store.acquire_connection_lease(
        connection, holder=result.run_id, kind=SCAN_JOB, ttl_s=60, now=utcnow()
    )
    fake_store.delete_connection(connection)

    settle_failure(instance, result, resources)

    assert fake_store.connection_lease(connection)["holder"] is None


# -- sync_connection_partitions ------------------------------------------------------------------


def test_partitions_follow_connections_by_alias_and_skip_when_nothing_changed(
    fake_store, instance, resources
):
    fake_store.add_connection(alias="a", connection_uri="sqlite:///a.db")
    b = fake_store.add_connection(alias="b", connection_uri="sqlite:///b.db").id
    instance.add_dynamic_partitions(CONNECTIONS.name, ["removed-connection", "a"])

    def tick(cursor: str | None):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
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
    fake_store.update_connection(b, alias="b-renamed")
    renamed = tick(second.cursor)
    after_rename = sorted(instance.get_dynamic_partitions(CONNECTIONS.name))
    fake_store.delete_connection(b)
    third = tick(renamed.cursor)
    lost_cursor = tick(None)  # the partitions already match: a new cursor, no request

    added, deleted = first.dynamic_partitions_requests
    assert (added.partition_keys, deleted.partition_keys) == (["b"], ["removed-connection"])
    assert after_first == ["a", "b"]
    assert second.skip_message == "partitions already match the 2 connection(s)"
    assert second.dynamic_partitions_requests == []
    assert after_rename == ["a", "b-renamed"]
    [deleted_b] = third.dynamic_partitions_requests
    assert deleted_b.partition_keys == ["b-renamed"]
    assert instance.get_dynamic_partitions(CONNECTIONS.name) == ["a"]
    assert lost_cursor.dynamic_partitions_requests == []
    assert lost_cursor.cursor == third.cursor
    assert lost_cursor.skip_message == "partitions already match the 1 connection(s)"


# -- check_table_descriptions --------------------------------------------------------------------


def test_check_sensor_reports_the_checks_only_when_their_outcome_changes(
    fake_store, connection, instance, resources
):
    def tick(cursor: str | None):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        return check_table_descriptions.evaluate_tick(context)

    healthy = tick(None)
    unchanged = tick(healthy.cursor)
    fake_store.descriptions.update_one(
        {"table_name": "orders"},
        {"$set": {"status": Status.FAILED.value, "error_message": "permission denied"}},
    )
    failing = tick(healthy.cursor)
    synchronizing(fake_store, "refunds", "a-dead-scan")  # no lease: past it
    stuck = tick(failing.cursor)

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
    past = {e.check_name: e for e in stuck.asset_events}["no_scan_past_its_lease"]
    assert not past.passed
    assert past.description.startswith("1 table description(s) SYNCHRONIZING past their scan")


# -- settle_orphaned_runs ------------------------------------------------------------------------

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
WAIT_S = 300


def lease(holder, expires_in_s, last=None):
    return {"holder": holder, "expires_at": NOW + timedelta(seconds=expires_in_s), "last": last}


def test_a_run_holding_a_live_lease_is_alive():
    assert orphan_reason(lease("r1", 60), "r1", NOW - timedelta(hours=3), NOW, WAIT_S) is None


def test_a_run_whose_lease_expired_is_orphaned():
    reason = orphan_reason(lease("r1", -1), "r1", NOW - timedelta(minutes=5), NOW, WAIT_S)
    assert reason and "expired" in reason


def test_a_run_that_released_its_lease_long_ago_but_never_ended_is_orphaned():
    last = {"holder": "r1", "released_at": NOW - timedelta(minutes=5)}
    reason = orphan_reason(lease(None, -100, last), "r1", NOW - timedelta(minutes=6), NOW, WAIT_S)
    assert reason and "released" in reason


def test_a_run_that_just_released_its_lease_is_given_time_to_finish():
    last = {"holder": "r1", "released_at": NOW - timedelta(seconds=5)}
    assert (
        orphan_reason(lease(None, -100, last), "r1", NOW - timedelta(minutes=1), NOW, WAIT_S)
        is None
    )


def test_a_run_still_waiting_for_the_lease_is_alive_until_it_outlives_the_longest_wait():
    other = lease("r2", 60)
    assert orphan_reason(other, "r1", NOW - timedelta(seconds=WAIT_S), NOW, WAIT_S) is None
    assert orphan_reason(other, "r1", NOW - timedelta(seconds=WAIT_S + 121), NOW, WAIT_S)
    assert orphan_reason(None, "r1", NOW - timedelta(hours=1), NOW, WAIT_S)


def test_orphan_sensor_fails_a_started_run_once_its_lease_expired(
    fake_store, connection, instance, resources
):
    run = instance.create_run_for_job(
        stand_in_refresh, tags={CONNECTION_TAG: connection}, status=dg.DagsterRunStatus.STARTED
    )
    other = instance.create_run_for_job(stand_in_refresh, status=dg.DagsterRunStatus.STARTED)
    fake_store.acquire_connection_lease(
        connection, holder=run.run_id, kind=REFRESH_JOB, ttl_s=60, now=utcnow()
    )

    def tick() -> str:
        return settle_orphaned_runs(
            dg.build_sensor_context(instance=instance, resources=resources)
        ).skip_message

    alive = tick()
    fake_store.leases[connection]["expires_at"] = utcnow() - timedelta(seconds=1)
    settled = tick()

    assert alive == "2 started run(s), none orphaned"  # the untagged one is never looked at
    assert settled == f"marked 1 orphaned run(s) failed: {run.run_id}"
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(other.run_id).status == dg.DagsterRunStatus.STARTED


# -- scan_what_refreshes_found -------------------------------------------------------------------


def refreshed(instance, alias: str, tables_found: list[str] | None) -> None:
    """A refresh's materialization of the connection's partition, as the refresh job records it."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=TABLE_DESCRIPTIONS,
            partition=alias,
            metadata={
                "tables_found": dg.MetadataValue.json(tables_found)
                if tables_found is not None
                else dg.MetadataValue.null()
            },
        )
    )


def auto_scan_tick(instance, resources, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return scan_what_refreshes_found.evaluate_tick(context)


def test_refreshes_that_found_tables_request_one_scan_of_them_per_auto_scan_connection(
    fake_store, instance, resources
):
    shop = fake_store.add_connection(
        alias="shop", connection_uri="sqlite:///s.db", auto_scan=True
    ).id
    big = fake_store.add_connection(alias="big", connection_uri="sqlite:///b.db", auto_scan=True).id
    fake_store.add_connection(alias="manual", connection_uri="sqlite:///m.db")
    refreshed(instance, "shop", ["main.customers", "main.orders"])
    refreshed(instance, "manual", ["main.orders"])
    refreshed(instance, "shop", ["main.refunds", "main.orders"])
    refreshed(instance, "big", None)  # too many to record: a changed-only scan

    first = auto_scan_tick(instance, resources, None)
    again = auto_scan_tick(instance, resources, first.cursor)

    requests = {r.tags[CONNECTION_TAG]: r for r in first.run_requests}
    assert set(requests) == {shop, big}
    config = requests[shop].run_config["ops"]["start_scan"]["config"]
    assert config["table_names"] == ["main.customers", "main.orders", "main.refunds"]
    assert config["changed_only"] is False
    assert requests[shop].tags[TRIGGER_TAG] == "sensor"
    assert requests[shop].run_key.startswith(f"{shop}@")
    big_config = requests[big].run_config["ops"]["start_scan"]["config"]
    assert (big_config.get("table_names"), big_config["changed_only"]) == (None, True)
    assert again.run_requests == []
    assert again.skip_message == "no refresh since the last evaluation"


def test_refreshes_of_a_connection_without_auto_scan_request_nothing_and_say_why(
    fake_store, instance, resources
):
    fake_store.add_connection(alias="shop", connection_uri="sqlite:///s.db")
    refreshed(instance, "shop", ["main.orders"])
    fake_store.add_connection(alias="auto", connection_uri="sqlite:///a.db", auto_scan=True)
    refreshed(instance, "auto", [])  # found nothing new

    result = auto_scan_tick(instance, resources, None)

    assert result.run_requests == [] and result.cursor is not None
    assert result.skip_message == (
        "2 refresh(es) found no new, restored or renamed table of a connection with auto_scan"
    )


def test_tables_to_scan_ignores_unknown_partitions_and_keeps_a_changed_only_scan():
    store = FakeStore()
    conn = store.add_connection(alias="shop", connection_uri="sqlite:///s.db", auto_scan=True)
    found = dg.MetadataValue.json

    wanted = tables_to_scan(
        [
            (None, {"tables_found": found(["main.a"])}),
            ("gone", {"tables_found": found(["main.a"])}),
            ("shop", {"tables_found": dg.MetadataValue.null()}),
            ("shop", {"tables_found": found(["main.b"])}),
        ],
        {"shop": conn},
    )

    assert wanted == {conn.id: None}
