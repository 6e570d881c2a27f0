"""`production`: the API's runs are submitted to the instance, and its daemon's run launcher
executes them in run workers of their own (not in the API's process)."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tdsync.config.settings import Settings, ensure_dagster_home
from tdsync.defs import runs
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.domain.errors import ConnectionBusy
from tdsync.store import CatalogueStore
from tdsync_tests.test_api.live import ApiProcess
from tdsync_tests.test_deploy.conftest import http_refresh_and_scan, process_env, step_pids


@pytest.fixture
def production_env(
    tdsync_env: dict[str, str],
    settings: Settings,
    dagster_pg: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    monkeypatch.setenv("TDSYNC_DEPLOYMENT", "production")
    ensure_dagster_home(settings)
    return {**tdsync_env, "TDSYNC_DEPLOYMENT": "production"}


def shop(path: Path) -> str:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        db.execute("INSERT INTO orders (status) VALUES ('paid'), ('open')")
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    return f"sqlite:///{path}"


def test_http_and_cli_runs_are_executed_by_the_instances_launcher_not_the_caller(
    production_env: dict[str, str],
    dagster_daemon,
    store: CatalogueStore,
    sqlite_path: Path,
    tmp_path: Path,
) -> None:
    conn = store.add_connection(alias="prod-shop", connection_uri=shop(sqlite_path))

    done = http_refresh_and_scan(conn.id, tmp_path / "api.log")

    # The API answered as SPEC says: the refresh with the descriptions, the scan with its claim.
    assert [(d["table_name"], d["status"]) for d in done.refreshed] == [
        ("customers", "NOT_SCANNED"),
        ("orders", "NOT_SCANNED"),
    ]
    assert {d["status"] for d in done.claimed} == {"SYNCHRONIZING"}
    [orders] = store.list_descriptions(conn.id, table_name="orders")
    assert [c.name for c in orders.columns] == ["id", "status"]
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        for run_id in (done.refresh_run_id, done.scan_run_id):
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS
            assert run.tags[TRIGGER_TAG] == "webhook"
            assert run.remote_job_origin.location_name == "tdsync.definitions"
            # Every step ran in one run worker the launcher started, not in the API.
            [worker] = step_pids(instance, run_id)
            assert worker != done.api_pid
        # The CLI too: `tdsync refresh` submits its run and waits for the run worker to end it.
        cli = subprocess.Popen(
            [str(Path(sys.executable).with_name("tdsync")), "refresh", "prod-shop"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output, _ = cli.communicate(timeout=180)
        assert cli.returncode == 0, output
        [by_cli] = instance.get_runs(
            dg.RunsFilter(tags={CONNECTION_TAG: conn.id, TRIGGER_TAG: "cli"})
        )
        assert by_cli.status == dg.DagsterRunStatus.SUCCESS
        assert cli.pid not in step_pids(instance, by_cli.run_id)
        # Through the queue: enqueued by the API, then launched by the daemon.
        for step in (dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING):
            assert len(instance.get_records_for_run(done.refresh_run_id, of_type=step).records) == 1


def test_a_failed_submitted_refresh_answers_with_its_error_code(
    production_env: dict[str, str],
    dagster_daemon,
    store: CatalogueStore,
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope.db"
    conn = store.add_connection(alias="prod-missing", connection_uri=f"sqlite:///{missing}")
    api = ApiProcess(process_env(), tmp_path / "api.log")
    try:
        with api.client() as http:
            answer = http.post(
                "/api/v1/table-descriptions/refresh", json={"db_connection_id": conn.id}
            )
    finally:
        api.stop()
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error_code"] == "invalid_database_connection"
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(body["detail"]["run_id"])
        assert run.status == dg.DagsterRunStatus.FAILURE
        [worker] = {
            r.event_log_entry.dagster_event.pid
            for r in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
            ).records
        }
        assert worker != api.proc.pid


def test_a_refresh_nothing_dequeues_is_connection_busy_and_its_run_cancelled(
    production_env: dict[str, str],
    store: CatalogueStore,
    sqlite_path: Path,
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"lease_wait_s": 1.0})
    conn = store.add_connection(alias="prod-queued", connection_uri=shop(sqlite_path))

    # No dagster-daemon runs: the submitted run stays queued.
    with pytest.raises(ConnectionBusy, match="no dagster-daemon") as busy:
        runs.refresh(conn.id, trigger="cli", settings=settings)

    run = runs.instance(settings).get_run_by_id(busy.value.detail["run_id"])
    assert run.status == dg.DagsterRunStatus.CANCELED
    assert store.list_descriptions(conn.id) == []
