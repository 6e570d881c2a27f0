"""The per-connection refresh schedule: which ticks request which runs, and why others skip."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from tdsync.definitions import defs
from tdsync.defs.partitions import CONNECTIONS
from tdsync.defs.resources import StoreResource
from tdsync.defs.schedules import (
    NEXT_REFRESH_TAG,
    SCHEDULE_TAG,
    refresh_connections_on_schedule,
)
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.domain.errors import ValidationFailed
from tdsync.store import CatalogueStore


def tick(at: datetime):
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=at,
            resources={"catalogue": StoreResource()},
            repository_def=defs().get_repository_def(),
        )
        result = refresh_connections_on_schedule.evaluate_tick(context)
        # Each requested partition exists by the time its run is created.
        partitions = set(instance.get_dynamic_partitions(CONNECTIONS.name))
        assert {r.partition_key for r in result.run_requests or []} <= partitions
        return result


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)  # a Monday


def add(store: CatalogueStore, alias: str, schedule: str | None, sqlite_path) -> str:
    return store.add_connection(
        alias=alias, connection_uri=f"sqlite:///{sqlite_path}", refresh_schedule=schedule
    ).id


def test_due_connection_gets_one_run_request_keyed_by_connection_and_fire_time(store, sqlite_path):
    quarterly = add(store, "quarterly", "*/15 * * * *", sqlite_path)
    add(store, "nightly", "0 3 * * *", sqlite_path)
    add(store, "unscheduled", None, sqlite_path)

    result = tick(at(10, 15))

    assert result.skip_message is None
    [request] = result.run_requests
    assert request.run_key == f"{quarterly}@2026-03-02T10:15Z"
    assert request.tags[CONNECTION_TAG] == quarterly
    assert request.tags[TRIGGER_TAG] == "schedule"
    assert request.partition_key == "quarterly"  # the connection's partition, by alias
    assert request.run_config == {}


def test_a_scheduled_run_carries_its_connections_cron_and_next_refresh(store, sqlite_path):
    add(store, "quarterly", "*/15 * * * *", sqlite_path)

    [request] = tick(at(10, 15)).run_requests

    assert request.tags[SCHEDULE_TAG] == "*/15 * * * *"
    assert request.tags[NEXT_REFRESH_TAG] == "2026-03-02 10:30 UTC"


def test_every_connection_due_in_the_same_minute_gets_its_own_run(store, sqlite_path):
    a = add(store, "a", "0 * * * *", sqlite_path)
    b = add(store, "b", "@hourly", sqlite_path)

    result = tick(at(11, 0))

    assert sorted(r.tags[CONNECTION_TAG] for r in result.run_requests) == sorted([a, b])
    assert len({r.run_key for r in result.run_requests}) == 2


def test_tick_between_fire_times_skips_saying_when_the_next_is_due(store, sqlite_path):
    add(store, "quarterly", "*/15 * * * *", sqlite_path)
    add(store, "weekdays", "30 9 * * mon-fri", sqlite_path)

    result = tick(at(10, 7))

    assert result.run_requests == []
    # Issue 15: each connection's cron and next refresh are listed, so one schedule ticking every
    # minute does not read as every connection refreshing every minute.
    assert result.skip_message == (
        "2 connections scheduled, none due until 2026-03-02 10:15 UTC "
        "(quarterly: */15 * * * *, next 2026-03-02 10:15 UTC; "
        "weekdays: 30 9 * * mon-fri, next 2026-03-03 09:30 UTC)"
    )


def test_without_any_refresh_schedule_the_tick_says_so(store, sqlite_path):
    add(store, "manual", None, sqlite_path)

    result = tick(at(10, 15))

    assert result.run_requests == []
    assert result.skip_message == "no connection has a refresh_schedule"


def test_bad_cron_on_one_connection_is_reported_and_the_others_still_run(store, sqlite_path):
    good = add(store, "good", "*/5 * * * *", sqlite_path)
    broken = add(store, "broken", None, sqlite_path)
    # Written behind the store's validation, as an older tdsync or a hand edit could have.
    store.connections.update_one({"alias": "broken"}, {"$set": {"refresh_schedule": "61 * * * *"}})

    due = tick(at(10, 5))
    idle = tick(at(10, 6))

    assert [r.tags[CONNECTION_TAG] for r in due.run_requests] == [good]
    assert broken not in {r.tags[CONNECTION_TAG] for r in due.run_requests}
    assert idle.skip_message.startswith("1 connection scheduled, none due until 2026-03-02 10:10")
    assert "1 with an invalid refresh_schedule (broken: '61 * * * *' is not a valid cron" in (
        idle.skip_message
    )


def test_a_schedule_added_through_the_store_applies_at_the_next_tick(store, sqlite_path):
    conn = add(store, "later", None, sqlite_path)
    assert tick(at(12, 0)).run_requests == []

    store.update_connection(conn, refresh_schedule="0 12 * * *")
    assert [r.tags[CONNECTION_TAG] for r in tick(at(12, 0)).run_requests] == [conn]

    store.update_connection(conn, refresh_schedule=None)
    assert tick(at(12, 0)).skip_message == "no connection has a refresh_schedule"


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("* * * *", "has 4 fields"),
        ("0 0 * * * *", "has 6 fields"),
        ("0 25 * * *", "not a valid cron string"),
        ("@reboot", "unknown cron macro"),
        ("0 0 31 2 *", "never fires"),
        ("  ", "must not be empty"),
    ],
)
def test_invalid_refresh_schedule_is_refused_with_a_validation_error(
    store, sqlite_path, cron, problem
):
    with pytest.raises(ValidationFailed, match=problem) as add_error:
        add(store, "bad", cron, sqlite_path)
    conn = add(store, "fine", None, sqlite_path)
    with pytest.raises(ValidationFailed, match=problem):
        store.update_connection(conn, refresh_schedule=cron)

    assert add_error.value.http_status == 422
    assert add_error.value.detail == {"field": "refresh_schedule", "value": cron}
    assert store.get_connection(conn).refresh_schedule is None
