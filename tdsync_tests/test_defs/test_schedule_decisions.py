"""Both schedules' decisions, fast: an in-memory store (tdsync_tests/fakes.py) behind the
`catalogue` resource, Dagster's in-memory instance and `build_schedule_context`.

test_schedules.py and test_auto_scan.py run the same ticks against a real store.
"""

from datetime import UTC, datetime

import dagster as dg
import pytest

from tdsync.definitions import defs
from tdsync.defs.partitions import CONNECTIONS
from tdsync.defs.schedules import (
    NEXT_REFRESH_TAG,
    SCHEDULE_TAG,
    refresh_connections_on_schedule,
    scan_connections_on_schedule,
)
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync_tests.fakes import FakeStore, fake_resource


@pytest.fixture(scope="module")
def repository() -> dg.RepositoryDefinition:
    return defs().get_repository_def()


@pytest.fixture(scope="module")
def instance():
    """One instance for the module (a schedule's context needs a persistent one, ~1 s to make):
    the partitions the ticks add pile up, and no assertion minds."""
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def tick(fake_store: FakeStore, repository, instance):
    def tick(at: datetime, schedule: dg.ScheduleDefinition = refresh_connections_on_schedule):
        # Closed after the tick: the instance it opened must not stay the process's current one.
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=at,
            resources={"catalogue": fake_resource(fake_store)},
            repository_def=repository,
        ) as context:
            result = schedule.evaluate_tick(context)
        # Each requested partition exists by the time its run is created.
        partitions = set(instance.get_dynamic_partitions(CONNECTIONS.name))
        assert {r.partition_key for r in result.run_requests or []} - {None} <= partitions
        return result

    return tick


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)  # a Monday


def add(store: FakeStore, alias: str, schedule: str | None = None, **fields) -> str:
    return store.add_connection(
        alias=alias, connection_uri="sqlite:///s.db", refresh_schedule=schedule, **fields
    ).id


def test_due_connection_gets_one_run_request_with_its_cron_and_next_refresh(fake_store, tick):
    quarterly = add(fake_store, "quarterly", "*/15 * * * *")
    add(fake_store, "nightly", "0 3 * * *")
    add(fake_store, "unscheduled")

    result = tick(at(10, 15))

    assert result.skip_message is None
    [request] = result.run_requests
    assert request.run_key == f"{quarterly}@2026-03-02T10:15Z"
    assert request.tags[CONNECTION_TAG] == quarterly
    assert request.tags[TRIGGER_TAG] == "schedule"
    assert request.tags[SCHEDULE_TAG] == "*/15 * * * *"
    assert request.tags[NEXT_REFRESH_TAG] == "2026-03-02 10:30 UTC"
    assert request.partition_key == "quarterly"
    assert request.run_config == {}


def test_every_connection_due_in_the_same_minute_gets_its_own_run(fake_store, tick):
    a = add(fake_store, "a", "0 * * * *")
    b = add(fake_store, "b", "@hourly")

    result = tick(at(11, 0))

    assert sorted(r.tags[CONNECTION_TAG] for r in result.run_requests) == sorted([a, b])
    assert len({r.run_key for r in result.run_requests}) == 2


def test_tick_between_fire_times_skips_saying_when_each_is_next_due(fake_store, tick):
    add(fake_store, "quarterly", "*/15 * * * *")
    add(fake_store, "weekdays", "30 9 * * mon-fri")

    result = tick(at(10, 7))

    assert result.run_requests == []
    assert result.skip_message == (
        "2 connections scheduled, none due until 2026-03-02 10:15 UTC "
        "(quarterly: */15 * * * *, next 2026-03-02 10:15 UTC; "
        "weekdays: 30 9 * * mon-fri, next 2026-03-03 09:30 UTC)"
    )


def test_without_any_refresh_schedule_the_tick_says_so(fake_store, tick):
    add(fake_store, "manual")

    result = tick(at(10, 15))

    assert result.run_requests == []
    assert result.skip_message == "no connection has a refresh_schedule"


def test_bad_cron_on_one_connection_is_skipped_and_the_others_still_run(fake_store, tick):
    good = add(fake_store, "good", "*/5 * * * *")
    add(fake_store, "broken")
    # Written behind the store's validation, as an older tdsync or a hand edit could have.
    fake_store.connections.update_one(
        {"alias": "broken"}, {"$set": {"refresh_schedule": "61 * * * *"}}
    )

    due = tick(at(10, 5))
    idle = tick(at(10, 6))

    assert [r.tags[CONNECTION_TAG] for r in due.run_requests] == [good]
    assert idle.skip_message.startswith("1 connection scheduled, none due until 2026-03-02 10:10")
    assert "1 with an invalid refresh_schedule (broken: '61 * * * *' is not a valid cron" in (
        idle.skip_message
    )


def test_a_schedule_changed_in_the_store_applies_at_the_next_tick(fake_store, tick):
    conn = add(fake_store, "later")
    assert tick(at(12, 0)).run_requests == []

    fake_store.update_connection(conn, refresh_schedule="0 12 * * *")
    assert [r.tags[CONNECTION_TAG] for r in tick(at(12, 0)).run_requests] == [conn]

    fake_store.update_connection(conn, refresh_schedule=None)
    assert tick(at(12, 0)).skip_message == "no connection has a refresh_schedule"


def test_scan_schedule_fans_out_one_changed_only_scan_per_due_connection(fake_store, tick):
    due = add(fake_store, "due", scan_schedule="*/15 * * * *")
    add(fake_store, "nightly", scan_schedule="0 3 * * *")
    add(fake_store, "refreshed", "* * * * *")

    [request] = tick(at(10, 15), scan_connections_on_schedule).run_requests
    skipped = tick(at(10, 7), scan_connections_on_schedule).skip_message

    assert request.run_key == f"{due}@2026-03-02T10:15Z"
    assert (request.tags[CONNECTION_TAG], request.tags[TRIGGER_TAG]) == (due, "schedule")
    config = request.run_config["ops"]["start_scan"]["config"]
    assert (config["db_connection_id"], config["changed_only"]) == (due, True)
    assert skipped == (
        "2 connections scheduled, none due until 2026-03-02 10:15 UTC"
        " (due: */15 * * * *, next 2026-03-02 10:15 UTC; nightly: 0 3 * * *, next 2026-03-03 03:00 UTC)"
    )


def test_scan_schedule_skips_a_bad_cron_and_says_when_none_is_set(fake_store, tick):
    add(fake_store, "plain")
    none_set = tick(at(10, 15), scan_connections_on_schedule)
    good = add(fake_store, "good", scan_schedule="*/5 * * * *")
    fake_store.connections.update_one({"alias": "plain"}, {"$set": {"scan_schedule": "bad"}})

    due = tick(at(10, 5), scan_connections_on_schedule)

    assert none_set.run_requests == []
    assert none_set.skip_message == "no connection has a scan_schedule"
    assert [r.tags[CONNECTION_TAG] for r in due.run_requests] == [good]
