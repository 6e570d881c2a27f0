"""Fixtures for the deployment tests: Dagster storage on a throwaway PostgreSQL database, RabbitMQ."""

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from tdsync.config.deployment import DEPLOY_DIR
from tdsync.defs.tags import CONNECTION_TAG
from tdsync_tests.conftest import IN_CI, PG_ADMIN_URL, _server_database, unavailable, until
from tdsync_tests.test_api.live import ApiProcess
from tdsync_tests.test_deploy.jobs import REPO

AMQP_URL = os.environ.get("TDSYNC_TEST_AMQP_URL", "pyamqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def dagster_pg(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway PostgreSQL database for Dagster's storage, exported as the DAGSTER_PG_* variables
    that deploy/production/dagster.yaml reads. Yields the database name."""
    for url in _server_database(PG_ADMIN_URL, "PostgreSQL at 127.0.0.1:5432"):
        parsed = sa.make_url(url)
        env = {
            "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(parsed.port or 5432),
            "DAGSTER_PG_DB": parsed.database,
            "DAGSTER_PG_USERNAME": parsed.username or "postgres",
            "DAGSTER_PG_PASSWORD": parsed.password or "",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield parsed.database


@pytest.fixture
def amqp_url() -> str:
    """The RabbitMQ broker the Celery tests use; unreachable means skip (fail under CI=true)."""
    from kombu import Connection

    try:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            # .ci/run starts RabbitMQ without waiting for it: under CI give it half a minute.
            conn.ensure_connection(
                max_retries=30 if IN_CI else 1, interval_start=1, interval_step=0, interval_max=1
            )
    except Exception as exc:
        unavailable(
            f"RabbitMQ (TDSYNC_TEST_AMQP_URL, default 127.0.0.1:5672) is unreachable: {exc}"
        )
    return AMQP_URL


def instance_on(
    deployment: str,
    dagster_home: Path,
    *,
    run_queue: dict | None = None,
    run_launcher: dict | None = None,
) -> dg.DagsterInstance:
    """A DagsterInstance on deploy/<deployment>/dagster.yaml, with run-queue settings or the run
    launcher swapped for the test."""
    config = yaml.safe_load((DEPLOY_DIR / deployment / "dagster.yaml").read_text())
    config["run_coordinator"]["config"].update(run_queue or {})
    if run_launcher:
        config["run_launcher"] = run_launcher
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return dg.DagsterInstance.from_config(str(dagster_home))


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


DAEMON_START_TIMEOUT_S = 120


@pytest.fixture
def dagster_daemon(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A real `dagster-daemon run` on the test's DAGSTER_HOME and the repo's workspace.yaml: it
    dequeues submitted runs and launches each in a run worker of its own (the instance's
    DefaultRunLauncher, through the code server it starts). Stopped with its children."""
    with running_daemon(tmp_path, REPO / "workspace.yaml") as daemon:
        yield daemon


@contextlib.contextmanager
def running_daemon(tmp_path: Path, workspace: Path) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run -w workspace` on DAGSTER_HOME, once it dequeues runs; then stopped."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),  # tdsync_tests too: an instance may name a test's run launcher
    }
    log = (tmp_path / "dagster-daemon.log").open("wb")
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with dg.DagsterInstance.get() as instance:

            def dequeuing() -> bool:
                assert daemon.poll() is None, (tmp_path / "dagster-daemon.log").read_text()
                return "QUEUED_RUN_COORDINATOR" in instance.get_daemon_heartbeats()

            until(dequeuing, "dagster-daemon dequeues runs", DAEMON_START_TIMEOUT_S, 0.5)
        yield daemon
    finally:
        stop_group(daemon)
        log.close()


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process and every process it started: SIGTERM, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class HttpRuns:
    """What `http_refresh_and_scan` did: its answers and the runs they started."""

    api_pid: int
    refreshed: list[dict]
    claimed: list[dict]
    refresh_run_id: str
    scan_run_id: str


def http_refresh_and_scan(connection_id: str, log_path: Path) -> HttpRuns:
    """`POST …/refresh` then `POST …/sync-schemas` on a real `tdsync api` of this environment
    (TDSYNC_*, DAGSTER_* of the test), the scan awaited through the descriptions."""
    api = ApiProcess(process_env(), log_path)
    try:
        with api.client() as http:
            refreshed = http.post(
                "/api/v1/table-descriptions/refresh", json={"db_connection_id": connection_id}
            )
            assert refreshed.status_code == 201, refreshed.text
            claimed = http.post(
                "/api/v1/table-descriptions/sync-schemas", json={"db_connection_id": connection_id}
            )
            assert claimed.status_code == 201, claimed.text

            def scanned() -> bool:
                listed = http.get(
                    "/api/v1/table-descriptions", params={"db_connection_id": connection_id}
                ).json()
                return {d["status"] for d in listed} == {"SCANNED"}

            until(scanned, "the scan run settled every row", timeout_s=180, poll_s=0.5)
    finally:
        api.stop()
    with dg.DagsterInstance.get() as instance:
        by_job = {
            run.job_name: run.run_id
            for run in instance.get_runs(dg.RunsFilter(tags={CONNECTION_TAG: connection_id}))
        }
        scan_run = by_job["scan_table_descriptions"]
        # Its rows are settled before its last events are: await the run's end too.
        until(lambda: instance.get_run_by_id(scan_run).is_finished, "the scan run ended", 60, 0.2)
    return HttpRuns(
        api.proc.pid,
        refreshed.json(),
        claimed.json(),
        by_job["refresh_table_descriptions"],
        by_job["scan_table_descriptions"],
    )


def process_env() -> dict[str, str]:
    """The test's TDSYNC_* and DAGSTER_* variables, for a process of its own (`tdsync api`)."""
    return {k: v for k, v in os.environ.items() if k.startswith(("TDSYNC_", "DAGSTER_"))}


def step_pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    """The processes that reported the run's step events."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    return {r.event_log_entry.dagster_event.pid for r in records.records}
