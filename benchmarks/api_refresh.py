"""Latency of `POST /api/v1/table-descriptions/refresh` against the framework's own cost.

Starts a real `tdsync api` process (embedded SecantusDB, a fresh TDSYNC_HOME and Dagster
instance), registers a 100-table SQLite connection and measures the refresh POST end to end
(nothing changed between refreshes: the steady state of a webhook). Beside it, on the same
Dagster instance and the same way (tdsync.defs.runs.execute: lease, tags, resources,
execute_in_process), an empty job with the refresh job's four ops and edges. The two are
measured alternately so that load from other processes hits both alike.

    .venv/bin/python benchmarks/api_refresh.py [--iterations 40] [--tables 100]

Prints both and writes benchmarks/results/api_refresh.json. Target: refresh p50 <= 2x empty p50.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api_process import fresh_home, process_cpu_s, running_api  # noqa: E402

from tdsync.config.settings import Settings  # noqa: E402

RESULT = HERE / "results" / "api_refresh.json"
TARGET_RATIO = 2.0
REFRESH = "/api/v1/table-descriptions/refresh"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--tables", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    with fresh_home("tdsync-bench-api-") as (root, env):
        os.environ.update(env)  # this process runs the empty job on the same instance
        source = _sqlite_with_tables(root / "source.db", args.tables)
        with (
            running_api(env, root / "api.log") as (api, url),
            httpx.Client(base_url=url, timeout=120) as client,
        ):
            created = client.post(
                "/api/v1/database-connections",
                json={"alias": "bench", "connection_uri": f"sqlite:///{source}"},
            )
            created.raise_for_status()
            connection_id = created.json()["id"]

            def refresh_post() -> None:
                response = client.post(REFRESH, json={"db_connection_id": connection_id})
                if response.status_code != 201 or len(response.json()) != args.tables:
                    raise RuntimeError(
                        f"refresh answered {response.status_code}: {response.text[:300]}"
                    )

            empty_job = _empty_job_runner(connection_id, Settings.from_env())
            for _ in range(args.warmup):  # first refresh inserts the tables; then steady state
                refresh_post()
                empty_job()
            refresh_s, empty_s, refresh_cpu, empty_cpu = [], [], [], []
            for _ in range(args.iterations):
                cpu = process_cpu_s(api.pid)
                refresh_s.append(_timed(refresh_post))
                refresh_cpu.append(process_cpu_s(api.pid) - cpu)
                cpu = time.process_time()
                empty_s.append(_timed(empty_job))
                empty_cpu.append(time.process_time() - cpu)

    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": args.tables,
        "iterations": args.iterations,
        "refresh_post_ms": _stats(refresh_s),
        "empty_4_op_job_ms": _stats(empty_s),
        "ratio_p50": round(statistics.median(refresh_s) / statistics.median(empty_s), 2),
        # CPU seconds of the process doing the work (the API server; this process for the empty
        # job): unlike wall time, hardly moved by other load on the machine.
        "refresh_post_cpu_ms": _stats(refresh_cpu),
        "empty_4_op_job_cpu_ms": _stats(empty_cpu),
        "ratio_cpu_p50": round(statistics.median(refresh_cpu) / statistics.median(empty_cpu), 2),
        "target_ratio": TARGET_RATIO,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    refresh, empty = result["refresh_post_ms"], result["empty_4_op_job_ms"]
    print(f"refresh POST ({args.tables} tables): p50 {refresh['p50']} ms, p95 {refresh['p95']} ms")
    print(f"empty 4-op job, same instance:   p50 {empty['p50']} ms, p95 {empty['p95']} ms")
    print(
        f"CPU per call: refresh p50 {result['refresh_post_cpu_ms']['p50']} ms, "
        f"empty job p50 {result['empty_4_op_job_cpu_ms']['p50']} ms "
        f"(ratio {result['ratio_cpu_p50']})"
    )
    verdict = "within" if result["ratio_p50"] <= TARGET_RATIO else "OVER"
    print(f"ratio of p50s: {result['ratio_p50']} ({verdict} the {TARGET_RATIO}x target)")
    print(f"written to {RESULT.relative_to(HERE.parent)}")
    return 0


def _sqlite_with_tables(path: Path, count: int) -> Path:
    with sqlite3.connect(path) as conn:
        for i in range(count):
            conn.execute(
                f"CREATE TABLE table_{i:04} (id INTEGER PRIMARY KEY, name TEXT, amount REAL)"
            )
    return path


def _empty_job_runner(connection_id: str, settings: Settings):
    """The refresh job's shape (load -> list -> diff -> write, the connection fanned out to
    all), with ops that do nothing, executed in this process on the same instance."""
    warnings.filterwarnings("ignore")
    import dagster as dg

    from tdsync.defs import runs

    @dg.op
    def load_connection() -> str:
        return connection_id

    @dg.op
    def list_live_tables(connection: str) -> list:
        return []

    @dg.op
    def diff_against_catalogue(connection: str, listing: list) -> dict:
        return {}

    @dg.op
    def write_statuses(connection: str, plan: dict) -> dict:
        return {}

    @dg.job
    def empty_refresh_shaped_job() -> None:
        connection = load_connection()
        plan = diff_against_catalogue(connection, list_live_tables(connection))
        write_statuses(connection, plan)

    instance = runs.instance(settings)  # one instance for the process, as the API keeps one

    def run() -> None:
        empty_refresh_shaped_job.execute_in_process(
            instance=instance, tags={"tdsync/db_connection_id": connection_id}
        )

    return run


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50": round(statistics.median(ordered) * 1000, 1),
        "p95": round(p95 * 1000, 1),
        "min": round(ordered[0] * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
