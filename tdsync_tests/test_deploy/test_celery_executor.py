"""The distributed deployment for real: a Celery worker on RabbitMQ runs the steps of tdsync's jobs,
Dagster's storage is on PostgreSQL, and the catalogue is the real MongoDB wire server."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tdsync.config.deployment import DEPLOY_DIR
from tdsync.config.settings import Settings, ensure_dagster_home
from tdsync.defs.partitions import ensure_partition
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.store import CatalogueStore
from tdsync_tests.test_deploy.conftest import (
    REPO,
    http_refresh_and_scan,
    step_pids,
    unique_name,
)
from tdsync_tests.test_deploy.jobs import tdsync_job

WORKER_START_TIMEOUT_S = 90

pytestmark = pytest.mark.filterwarnings(
    # dagster-celery registers its step task again for every step it submits; harmless.
    "ignore:Task name 'execute_plan' is already registered",
)


@pytest.fixture
def distributed_env(
    tdsync_env: dict[str, str],
    settings: Settings,
    dagster_pg: str,
    amqp_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """TDSYNC_DEPLOYMENT=distributed with its own Celery queue, so no other worker takes its steps."""
    env = {
        "TDSYNC_DEPLOYMENT": "distributed",
        "TDSYNC_CELERY_BROKER": amqp_url,
        "TDSYNC_CELERY_QUEUE": unique_name("tdsync_test"),
        "TDSYNC_SHARED_STORAGE_DIR": str(tmp_path / "shared"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ensure_dagster_home(settings)
    return {**tdsync_env, **env}


@pytest.fixture
def celery_worker(distributed_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A real dagster-celery worker on the test's queue; yields its name. Killed with its children."""
    queue = distributed_env["TDSYNC_CELERY_QUEUE"]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    # A file, not a pipe: nobody reads the worker's log while it runs, and a full pipe would
    # block it mid-step.
    log = (tmp_path / "celery-worker.log").open("wb")
    worker = subprocess.Popen(
        [
            str(bin_dir / "dagster-celery"),
            *("worker", "start", "-A", "dagster_celery.app"),
            *("-y", str(DEPLOY_DIR / "distributed" / "celery.yaml")),
            *("-q", queue, "-n", queue, "-l", "WARNING"),
            # after "--": arguments for celery itself; one process, no cluster chatter.
            *("--", "--concurrency=1", "--without-gossip", "--without-mingle"),
        ],
        cwd=REPO,
        env=env,
        start_new_session=True,  # its own process group: teardown kills the celery children too
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    name = f"{queue}@{socket.gethostname()}"
    app = _celery_app(distributed_env["TDSYNC_CELERY_BROKER"])
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while not app.control.ping(destination=[name], timeout=0.5):
            if worker.poll() is not None:
                log.flush()
                tail = (tmp_path / "celery-worker.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"celery worker exited: {tail}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"celery worker {name} did not answer within {WORKER_START_TIMEOUT_S} s"
                )
        yield name
    finally:
        _kill_group(worker)
        log.close()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
        app.close()


def test_refresh_and_scan_run_on_a_celery_worker_with_dagster_storage_on_postgres(
    celery_worker: str, store: CatalogueStore, sqlite_path: Path
) -> None:
    with sqlite3.connect(sqlite_path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        db.execute("INSERT INTO orders (status) VALUES ('paid'), ('open'), ('paid')")
        db.execute("CREATE TABLE Customers (id INTEGER PRIMARY KEY)")
        db.execute("CREATE VIEW paid_orders AS SELECT * FROM orders WHERE status = 'paid'")
    conn = store.add_connection(alias="celery-shop", connection_uri=f"sqlite:///{sqlite_path}")
    tags = {CONNECTION_TAG: conn.id, TRIGGER_TAG: "cli"}

    with dg.DagsterInstance.get() as instance:
        ensure_partition(instance, "celery-shop")
        refresh = _execute(
            instance,
            "refresh_table_descriptions",
            run_config={},
            tags={**tags, "dagster/partition": "celery-shop"},
        )
        listed = _statuses(store, conn.id)
        scan = _execute(
            instance,
            "scan_table_descriptions",
            run_config={"ops": {"start_scan": {"config": {"db_connection_id": conn.id}}}},
            tags=tags,
        )

        # Both runs recorded on PostgreSQL, every step executed by our worker, not here.
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        for result in (refresh, scan):
            record = instance.get_run_record_by_id(result.run_id)
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            assert record.dagster_run.tags[CONNECTION_TAG] == conn.id
        assert _steps_run_by(instance, refresh.run_id) == dict.fromkeys(
            [
                *(
                    f"table_descriptions.{op}"
                    for op in ("load_connection", "list_live_tables", "diff_against_catalogue")
                ),
                "table_descriptions.write_statuses",
                "table_description_checks",
            ],
            celery_worker,
        )
        assert _steps_run_by(instance, scan.run_id) == dict.fromkeys(
            ["start_scan", "scan_tables"], celery_worker
        )

    # The catalogue they wrote: the refresh listed every table and view, the scan described them.
    assert listed == {
        ("main", "Customers", "TABLE"): "NOT_SCANNED",
        ("main", "orders", "TABLE"): "NOT_SCANNED",
        ("main", "paid_orders", "VIEW"): "NOT_SCANNED",
    }
    assert set(_statuses(store, conn.id).values()) == {"SCANNED"}
    [orders] = store.list_descriptions(conn.id, table_name="orders")
    assert [(c.name, c.is_primary_key) for c in orders.columns] == [
        ("id", True),
        ("status", False),
    ]
    assert "CREATE TABLE orders" in orders.table_schema
    assert len(orders.examples) == 3
    assert store.get_connection(conn.id).last_refreshed_at is not None


def test_http_refresh_and_scan_are_executed_by_the_celery_worker(
    celery_worker: str, dagster_daemon, store: CatalogueStore, sqlite_path: Path, tmp_path: Path
) -> None:
    with sqlite3.connect(sqlite_path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        db.execute("INSERT INTO orders (status) VALUES ('paid'), ('open')")
        db.execute("CREATE VIEW open_orders AS SELECT * FROM orders WHERE status = 'open'")
    conn = store.add_connection(alias="celery-http", connection_uri=f"sqlite:///{sqlite_path}")

    done = http_refresh_and_scan(conn.id, tmp_path / "api.log")

    # The API answered as SPEC says, once the refresh run had ended; the scan claimed the rows.
    assert [(d["table_name"], d["status"]) for d in done.refreshed] == [
        ("open_orders", "NOT_SCANNED"),
        ("orders", "NOT_SCANNED"),
    ]
    assert {d["status"] for d in done.claimed} == {"SYNCHRONIZING"}
    [orders] = store.list_descriptions(conn.id, table_name="orders")
    assert [c.name for c in orders.columns] == ["id", "status"]
    with dg.DagsterInstance.get() as instance:
        for run_id in (done.refresh_run_id, done.scan_run_id):
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
            assert done.api_pid not in step_pids(instance, run_id)
        assert _steps_run_by(instance, done.refresh_run_id) == dict.fromkeys(
            [
                *(
                    f"table_descriptions.{op}"
                    for op in ("load_connection", "list_live_tables", "diff_against_catalogue")
                ),
                "table_descriptions.write_statuses",
                "table_description_checks",
            ],
            celery_worker,
        )
        assert _steps_run_by(instance, done.scan_run_id) == dict.fromkeys(
            ["start_scan", "scan_tables"], celery_worker
        )


def _statuses(store: CatalogueStore, connection_id: str) -> dict[tuple[str, str, str], str]:
    return {
        (d.schema_name, d.table_name, d.table_type.value): d.status.value
        for d in store.list_descriptions(connection_id)
    }


def _execute(
    instance: dg.DagsterInstance, job_name: str, *, run_config: dict, tags: dict[str, str]
) -> dg.JobExecutionResult:
    """Orchestrate a run here, as a run worker would; its executor sends each step to Celery."""
    with dg.execute_job(
        tdsync_job(job_name), instance=instance, run_config=run_config, tags=tags
    ) as result:
        return result


def _steps_run_by(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """step key -> the Celery worker that reported executing it."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    steps = {}
    for record in records:
        entry = record.event_log_entry
        metadata = entry.dagster_event.engine_event_data.metadata
        if "Celery worker" in metadata:
            steps[entry.step_key] = metadata["Celery worker"].value
    return steps


def _celery_app(broker: str):
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app

    return make_app(CeleryExecutor.for_cli(broker=broker).app_args())


def _kill_group(process: subprocess.Popen) -> None:
    """Stop the worker and every process it started: a warm shutdown first, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
        # The CLI has exited; make sure no celery child outlived it.
        deadline = time.monotonic() + wait_s
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _group_alive(process.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
