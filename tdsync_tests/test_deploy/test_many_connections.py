"""Fifty connections whose refresh schedules fall due in the same minute, on the production instance
(deploy/production/dagster.yaml, storage on PostgreSQL): Dagster's run queue refreshes every
connection once, never runs two refreshes of one connection at once, and never exceeds
max_concurrent_runs.

The queue is a real `dagster-daemon run`; its workspace has no code location, so no schedule or
sensor of its own ticks meanwhile (the test ticks the schedule at noon itself). Its run launcher
is tdsync_tests/test_deploy/forked_run_launcher.py."""

import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from tdsync.definitions import defs
from tdsync.defs import runs
from tdsync.defs.resources import StoreResource
from tdsync.defs.schedules import refresh_connections_on_schedule
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import until
from tdsync_tests.test_deploy.conftest import instance_on, running_daemon

CONNECTIONS = 50
MAX_CONCURRENT_RUNS = 8
TICK = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # noon: every schedule below fires
SCHEDULES = ["0 * * * *", "*/5 * * * *", "*/15 * * * *", "0 12 * * *", "@hourly"]
# Every tenth connection refreshes every minute: due again at the next tick, so a second run of
# it is queued behind the first.
EVERY_MINUTE = "* * * * *"
DRAIN_DEADLINE_S = 240
IN_PROGRESS = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@pytest.fixture
def production_instance(
    tdsync_env: dict[str, str], dagster_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    monkeypatch.setenv("TDSYNC_DEPLOYMENT", "production")  # what the run workers see
    home = tmp_path / "dagster-production"
    instance = instance_on(
        "production",
        home,
        run_queue={"max_concurrent_runs": MAX_CONCURRENT_RUNS},
        run_launcher={
            "module": "tdsync_tests.test_deploy.forked_run_launcher",
            "class": "ForkedRunLauncher",
        },
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the daemon's instance
    with instance:
        yield instance


@pytest.fixture
def queue_daemon(production_instance: dg.DagsterInstance, tmp_path: Path) -> Iterator[None]:
    """The run queue's daemon, on a workspace without code location."""
    workspace = tmp_path / "no-code-location.yaml"
    workspace.write_text("load_from: []\n")
    with running_daemon(tmp_path, workspace):
        yield


def test_fifty_connections_due_together_are_each_refreshed_once_within_the_run_limits(
    store: CatalogueStore,
    production_instance: dg.DagsterInstance,
    queue_daemon: None,
    tmp_path: Path,
) -> None:
    connections = _register(store, tmp_path)
    every_minute = {c for c, schedule in connections.items() if schedule == EVERY_MINUTE}

    due_now = _tick(production_instance, TICK)
    due_next_minute = _tick(production_instance, TICK + timedelta(minutes=1))
    # The daemon fell behind: both ticks' runs are queued before any has started.
    _submit(production_instance, due_now + due_next_minute)
    _drain_queue(production_instance)

    # The schedule asked for exactly one refresh of every connection at noon...
    assert sorted(r.tags[CONNECTION_TAG] for r in due_now) == sorted(connections)
    assert {r.tags[CONNECTION_TAG] for r in due_next_minute} == every_minute
    records = production_instance.get_run_records()
    assert len(records) == CONNECTIONS + len(every_minute)
    assert {r.dagster_run.status for r in records} == {dg.DagsterRunStatus.SUCCESS}
    # ...the queue never ran two of one connection at once...
    intervals = defaultdict(list)
    for record in records:
        intervals[record.dagster_run.tags[CONNECTION_TAG]].append(
            (record.start_time, record.end_time)
        )
    for connection_id, spans in intervals.items():
        spans.sort()
        assert len(spans) == (2 if connection_id in every_minute else 1)
        for (_, first_end), (second_start, _) in zip(spans, spans[1:], strict=False):
            assert first_end <= second_start, f"two runs of {connection_id} overlapped"
    # ...nor more than the global limit, and the limit was what bounded it.
    peak = _peak_concurrency([span for spans in intervals.values() for span in spans])
    assert 2 <= peak <= MAX_CONCURRENT_RUNS
    # Every connection's catalogue was written.
    for connection_id in connections:
        described = store.list_descriptions(connection_id)
        assert [d.table_name for d in described] == ["customers", "orders"]
        assert store.get_connection(connection_id).last_refreshed_at is not None


def _register(store: CatalogueStore, tmp_path: Path) -> dict[str, str]:
    """Fifty small SQLite sources, each with a schedule that fires at noon; id -> schedule."""
    connections = {}
    for n in range(CONNECTIONS):
        path = tmp_path / f"source_{n}.db"
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
            db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER)")
        schedule = EVERY_MINUTE if n % 10 == 0 else SCHEDULES[n % len(SCHEDULES)]
        conn = store.add_connection(
            alias=f"shop-{n:02d}", connection_uri=f"sqlite:///{path}", refresh_schedule=schedule
        )
        connections[conn.id] = schedule
    return connections


def _tick(instance: dg.DagsterInstance, at: datetime) -> list[dg.RunRequest]:
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        resources={"catalogue": StoreResource()},
        repository_def=defs().get_repository_def(),
    )
    return list(refresh_connections_on_schedule.evaluate_tick(context).run_requests)


def _submit(instance: dg.DagsterInstance, requests: list[dg.RunRequest]) -> None:
    """Queue runs the way the scheduler daemon does: created from the code location, submitted."""
    for request in requests:
        assert request.tags[TRIGGER_TAG] == "schedule"
        run = runs.create_run(
            refresh_connections_on_schedule.job_name,
            dagster_instance=instance,
            run_config=request.run_config,
            tags={**request.tags, "dagster/schedule_name": refresh_connections_on_schedule.name},
            partition=request.partition_key,
        )
        runs.submit(instance, run)


def _drain_queue(instance: dg.DagsterInstance) -> None:
    """Await the daemon's queue: every run finished."""
    until(
        lambda: not instance.get_runs_count(dg.RunsFilter(statuses=IN_PROGRESS)),
        "every queued run has finished",
        DRAIN_DEADLINE_S,
        0.5,
    )


def _peak_concurrency(spans: list[tuple[float, float]]) -> int:
    """The most runs that were in progress at one moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in events:  # an end sorts before a start at the same instant
        running += change
        peak = max(peak, running)
    return peak
