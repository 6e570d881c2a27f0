"""At most one refresh or scan per connection at a time, whoever triggers it."""

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import dagster as dg
import pytest

from tdsync.config.settings import Settings
from tdsync.definitions import defs
from tdsync.defs import runs
from tdsync.defs.partitions import ensure_partition
from tdsync.defs.refresh_job import refresh_table_descriptions
from tdsync.domain.errors import ConnectionBusy, InvalidDatabaseConnection
from tdsync.domain.models import utcnow
from tdsync.services import connection_lease, refresh
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import until


@pytest.fixture
def connection(store: CatalogueStore, sqlite_path) -> str:
    with sqlite3.connect(sqlite_path) as db:
        db.executescript("CREATE TABLE orders (id INTEGER); CREATE TABLE users (id INTEGER);")
    return store.add_connection(alias="shop", connection_uri=f"sqlite:///{sqlite_path}").id


@pytest.fixture
def paused_listing(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Listing live tables blocks until the returned event is set (runs execute in-process)."""
    resume = threading.Event()
    original = refresh.list_live

    def list_live(*args, **kwargs):
        assert resume.wait(30), "the test never resumed the listing"
        return original(*args, **kwargs)

    monkeypatch.setattr(refresh, "list_live", list_live)
    return resume


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def refresh_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name=refresh_table_descriptions.name)))


def test_second_refresh_during_a_running_one_waits_and_returns_its_result(
    store, connection, paused_listing, settings: Settings
):
    first, first_out = in_thread(
        lambda: runs.refresh(connection, trigger="webhook", settings=settings)
    )
    until(
        lambda: (store.connection_lease(connection) or {}).get("holder"),
        "the lease is held",
        timeout_s=20,
        poll_s=0.02,
    )
    second, second_out = in_thread(
        lambda: runs.refresh(connection, trigger="cli", settings=settings)
    )
    time.sleep(0.5)  # give the second caller time to (wrongly) start a run of its own
    assert second.is_alive(), "the second refresh did not wait for the first"

    paused_listing.set()
    first.join(30)
    second.join(30)

    assert "error" not in first_out and "error" not in second_out
    assert first_out["value"]["added"] == 2
    assert second_out["value"] == first_out["value"]
    assert len(refresh_runs(runs.instance(settings))) == 1
    assert (store.connection_lease(connection) or {}).get("holder") is None


def test_refresh_waiting_on_another_kind_of_run_runs_after_it_not_alongside(
    store, connection, settings: Settings
):
    # Another job's run (a scan, say) holds the connection: the refresh must wait, then run.
    assert store.acquire_connection_lease(
        connection, holder="scan-run", kind="scan_table_descriptions", ttl_s=60, now=utcnow()
    )
    waiting, outcome = in_thread(
        lambda: runs.refresh(connection, trigger="webhook", settings=settings)
    )
    time.sleep(0.5)
    assert waiting.is_alive()
    assert refresh_runs(runs.instance(settings)) == []

    connection_lease.release(store, "scan-run", succeeded=True)
    waiting.join(30)

    assert outcome["value"]["added"] == 2
    [run] = refresh_runs(runs.instance(settings))
    assert run.status == dg.DagsterRunStatus.SUCCESS


def test_refresh_gives_up_with_connection_busy_after_the_bounded_wait(
    store, connection, settings: Settings
):
    settings = settings.model_copy(update={"lease_wait_s": 0.5})
    assert store.acquire_connection_lease(
        connection, holder="stuck-run", kind="scan_table_descriptions", ttl_s=60, now=utcnow()
    )

    with pytest.raises(ConnectionBusy) as busy:
        runs.refresh(connection, trigger="cli", settings=settings)

    assert busy.value.http_status == 409
    assert busy.value.detail["run_id"] == "stuck-run"
    assert refresh_runs(runs.instance(settings)) == []


def test_lease_of_a_crashed_holder_expires_and_the_next_refresh_proceeds(
    store, connection, settings: Settings
):
    long_ago = utcnow() - timedelta(minutes=10)
    assert store.acquire_connection_lease(
        connection, holder="crashed-run", kind="scan_table_descriptions", ttl_s=60, now=long_ago
    )

    summary = runs.refresh(connection, trigger="cli", settings=settings)

    assert summary["added"] == 2
    assert store.connection_lease(connection)["last"]["holder"] != "crashed-run"


def test_run_launched_outside_tdsync_runs_takes_the_lease_inside_the_job(
    store, connection, monkeypatch, settings: Settings
):
    """As a run launched from the Dagster UI does: only the job's own ops guard it."""
    assert store.acquire_connection_lease(
        connection, holder="api-run", kind="refresh_table_descriptions", ttl_s=60, now=utcnow()
    )
    instance = runs.instance(settings)

    def launched_run() -> dg.ExecuteInProcessResult:
        job = defs().resolve_job_def(refresh_table_descriptions.name)
        return job.execute_in_process(partition_key=alias, instance=instance)

    alias = store.get_connection(connection).alias
    ensure_partition(instance, alias)  # as the UI lists it

    thread, outcome = in_thread(launched_run)
    until(lambda: refresh_runs(instance), "the launched run has started", timeout_s=20, poll_s=0.02)
    time.sleep(0.5)
    assert thread.is_alive(), "the launched run did not wait for the lease"
    assert store.list_descriptions(connection) == []

    connection_lease.release(store, "api-run", succeeded=True)
    thread.join(30)

    result = outcome["value"]
    assert result.success
    assert len(store.list_descriptions(connection)) == 2
    lease = store.connection_lease(connection)
    assert lease["holder"] is None
    assert lease["last"]["holder"] == result.run_id
    assert lease["last"]["succeeded"] is True
    assert lease["last"]["outcome"] == {"run_id": result.run_id}  # joiners read its materialization


def test_failed_run_releases_its_lease_with_the_failure_recorded(
    store, tmp_path, settings: Settings
):
    unreachable = tmp_path / "no-such-folder" / "shop.db"
    conn = store.add_connection(alias="gone", connection_uri=f"sqlite:///{unreachable}")

    with pytest.raises(InvalidDatabaseConnection):
        runs.refresh(conn.id, trigger="cli", settings=settings)

    lease = store.connection_lease(conn.id)
    assert lease["holder"] is None
    assert lease["last"]["succeeded"] is False
