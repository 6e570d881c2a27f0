"""Latency of `POST /api/v1/table-descriptions/refresh` on the `production` and `distributed`
deployments, where the API submits the run to the instance and waits for it.

For each deployment: a fresh home (embedded SecantusDB), Dagster's storage on a throwaway
PostgreSQL database (127.0.0.1:5432), a real `dagster-daemon` (queue, DefaultRunLauncher: one run
worker process per run) and, for `distributed`, a `dagster-celery` worker on RabbitMQ
(127.0.0.1:5672) that executes every step. A small SQLite connection is refreshed once to warm
up, then `--iterations` times, one after the other (nothing changed: the steady state).

    .venv/bin/python benchmarks/deployed_refresh.py [--iterations 5] [--tables 10]

Prints the figures and writes benchmarks/results/deployed_refresh.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))

from api_process import fresh_home, running_api  # noqa: E402

RESULT = HERE / "results" / "deployed_refresh.json"
PG_ADMIN = os.environ.get("TDSYNC_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP = os.environ.get("TDSYNC_BENCH_AMQP_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
REFRESH = "/api/v1/table-descriptions/refresh"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--deployments", nargs="+", default=["production", "distributed"])
    args = parser.parse_args()
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": args.tables,
        "iterations": args.iterations,
    }
    for name in args.deployments:
        latencies = measure(name, args.tables, args.iterations)
        result[name] = {
            "median_s": round(statistics.median(latencies), 3),
            "min_s": round(min(latencies), 3),
            "max_s": round(max(latencies), 3),
            "all_s": [round(x, 3) for x in latencies],
        }
        print(f"{name}: refresh POST median {result[name]['median_s']} s {result[name]['all_s']}")
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULT.relative_to(REPO)}")
    return 0


def measure(deployment: str, tables: int, iterations: int) -> list[float]:
    with ExitStack() as stack:
        root, env = stack.enter_context(fresh_home(f"tdsync-bench-{deployment}-"))
        env = {**env, "TDSYNC_DEPLOYMENT": deployment, **stack.enter_context(dagster_pg())}
        if deployment == "distributed":
            env |= {
                "TDSYNC_CELERY_BROKER": AMQP,
                "TDSYNC_CELERY_QUEUE": f"tdsync_bench_{uuid.uuid4().hex[:8]}",
                "TDSYNC_SHARED_STORAGE_DIR": str(root / "shared"),
            }
        os.environ.update(env)
        from tdsync.config.settings import Settings, ensure_dagster_home

        ensure_dagster_home(Settings.from_env())  # the deployment's dagster.yaml
        if deployment == "distributed":
            stack.enter_context(celery_worker(env, root / "celery.log"))
        stack.enter_context(daemon(root / "daemon.log"))
        source = root / "source.db"
        with sqlite3.connect(source) as db:
            for i in range(tables):
                db.execute(f"CREATE TABLE t_{i:03} (id INTEGER PRIMARY KEY, name TEXT)")
        _, url = stack.enter_context(running_api(env, root / "api.log"))
        http = stack.enter_context(httpx.Client(base_url=url, timeout=600))
        created = http.post(
            "/api/v1/database-connections",
            json={"alias": "bench", "connection_uri": f"sqlite:///{source}"},
        )
        created.raise_for_status()
        connection_id = created.json()["id"]
        latencies = []
        for i in range(iterations + 1):  # the first one inserts the tables: warm-up
            started = time.perf_counter()
            answer = http.post(REFRESH, json={"db_connection_id": connection_id})
            if answer.status_code != 201 or len(answer.json()) != tables:
                raise RuntimeError(f"refresh answered {answer.status_code}: {answer.text[:300]}")
            if i:
                latencies.append(time.perf_counter() - started)
        return latencies


@contextmanager
def dagster_pg() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL database for Dagster's storage, as the DAGSTER_PG_* variables."""
    name = f"tdsync_bench_dagster_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_ADMIN)
    try:
        yield {
            "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_DB": name,
            "DAGSTER_PG_USERNAME": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "",
        }
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def daemon(log_path: Path) -> Iterator[None]:
    import dagster as dg

    with _process([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], log_path):
        with dg.DagsterInstance.get() as instance:
            deadline = time.monotonic() + 180
            while "QUEUED_RUN_COORDINATOR" not in instance.get_daemon_heartbeats():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dagster-daemon did not start:\n{log_path.read_text()}")
                time.sleep(0.5)  # its heartbeat is only visible in storage
        yield


@contextmanager
def celery_worker(env: dict[str, str], log_path: Path) -> Iterator[None]:
    queue = env["TDSYNC_CELERY_QUEUE"]
    command = [
        str(BIN / "dagster-celery"),
        *("worker", "start", "-A", "dagster_celery.app"),
        *("-y", str(REPO / "deploy" / "distributed" / "celery.yaml")),
        *("-q", queue, "-n", queue, "-l", "WARNING"),
        *("--", "--concurrency=1", "--without-gossip", "--without-mingle"),
    ]
    with _process(command, log_path):
        from dagster_celery.executor import CeleryExecutor
        from dagster_celery.make_app import make_app

        app = make_app(CeleryExecutor.for_cli(broker=AMQP).app_args())
        deadline = time.monotonic() + 180
        while not app.control.ping(destination=[f"{queue}@{os.uname().nodename}"], timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start:\n{log_path.read_text()}")
        try:
            yield
        finally:
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)


@contextmanager
def _process(command: list[str], log_path: Path) -> Iterator[subprocess.Popen]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(15)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue


if __name__ == "__main__":
    sys.exit(main())
