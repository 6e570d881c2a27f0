"""Load: concurrent clients sending refreshes and lists of one connection to one `tdsync api`.

Starts a real `tdsync api` process (embedded SecantusDB, a fresh TDSYNC_HOME and Dagster
instance, loopback only), registers a SQLite connection of `--tables` tables, then `--clients`
threads, each with its own HTTP connection, share out `--requests` requests, alternately
`POST /api/v1/table-descriptions/refresh` and `GET /api/v1/table-descriptions`, round-robin over
`--connections` connections (default 1: every refresh is of the same connection, so concurrent
ones share a run; more: runs of different connections go on at once in the process). Bounded by
`--deadline-s` (no request starts after it). Every answer must be 201 (refresh) or 200 (list)
with every table once; afterwards the catalogue must hold each table exactly once.

    .venv/bin/python benchmarks/load.py [--clients 10] [--requests 500] [--tables 50]
                                        [--connections 1]

Prints p50/p99 latency per kind and the throughput; writes benchmarks/results/load.json
(load_N.json for N connections).
`run_load` is also the driver of the smaller load test in tdsync_tests/test_reliability.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sqlite3
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api_process import fresh_home, process_cpu_s, running_api  # noqa: E402

RESULT = HERE / "results" / "load.json"
REFRESH = "/api/v1/table-descriptions/refresh"
LIST = "/api/v1/table-descriptions"
KINDS = ("refresh", "list")


@dataclass
class Answer:
    kind: str
    status: int
    seconds: float
    tables: int  # descriptions in the answer (-1 when it was not a list)
    error: str | None = None


@dataclass
class LoadResult:
    clients: int
    requested: int
    answers: list[Answer] = field(default_factory=list)
    wall_s: float = 0.0

    def failures(self, expected_tables: int) -> list[Answer]:
        ok = {"refresh": 201, "list": 200}
        return [a for a in self.answers if a.status != ok[a.kind] or a.tables != expected_tables]

    def summary(self) -> dict:
        out: dict = {
            "clients": self.clients,
            "requests": len(self.answers),
            "wall_s": round(self.wall_s, 2),
            "throughput_rps": round(len(self.answers) / self.wall_s, 1) if self.wall_s else 0,
        }
        for kind in (*KINDS, "all"):
            seconds = [a.seconds for a in self.answers if kind in ("all", a.kind)]
            if seconds:
                out[f"{kind}_ms"] = latency_ms(seconds)
        return out


def latency_ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] * 1000, 1)

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered) * 1000, 1),
        "p99": pct(0.99),
        "max": round(ordered[-1] * 1000, 1),
    }


def run_load(
    base_url: str,
    connection_ids: list[str],
    *,
    clients: int,
    requests: int,
    deadline_s: float,
    timeout_s: float = 300.0,
) -> LoadResult:
    """`clients` threads share out `requests` requests (refresh, list, refresh, ...), each pair
    of a connection after the other."""
    result = LoadResult(clients=clients, requested=requests)
    numbers = itertools.count()
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + deadline_s

    def client_loop() -> None:
        with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
            while time.monotonic() < stop_at:
                with lock:
                    n = next(numbers)
                if n >= requests:
                    return
                kind = KINDS[n % 2]
                answer = _send(client, kind, connection_ids[n // 2 % len(connection_ids)])
                with lock:
                    result.answers.append(answer)

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(deadline_s + timeout_s)
    result.wall_s = time.monotonic() - start
    return result


def _send(client: httpx.Client, kind: str, connection_id: str) -> Answer:
    started = time.perf_counter()
    try:
        if kind == "refresh":
            response = client.post(REFRESH, json={"db_connection_id": connection_id})
        else:
            response = client.get(LIST, params={"db_connection_id": connection_id})
    except httpx.HTTPError as exc:
        return Answer(kind, 0, time.perf_counter() - started, -1, type(exc).__name__)
    seconds = time.perf_counter() - started
    body = response.json()
    tables = len(body) if isinstance(body, list) else -1
    error = None if isinstance(body, list) else str(body)[:300]
    return Answer(kind, response.status_code, seconds, tables, error)


def stored_keys(env: dict[str, str], connection_id: str) -> list[tuple[str, str]]:
    """Every (schema, table) the catalogue holds for a connection, duplicates included."""
    from unittest import mock

    from tdsync.config.settings import Settings
    from tdsync.store.client import open_store

    with mock.patch.dict(os.environ, env):
        store = open_store(Settings.from_env())
    docs = store.descriptions.find(
        {"db_connection_id": connection_id}, {"schema_name": 1, "table_name": 1}
    )
    return sorted((d["schema_name"], d["table_name"]) for d in docs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--deadline-s", type=float, default=900.0)
    args = parser.parse_args()

    with fresh_home("tdsync-bench-load-") as (root, env):
        source = root / "source.db"
        with sqlite3.connect(source) as db:
            for i in range(args.tables):
                db.execute(f"CREATE TABLE table_{i:03} (id INTEGER PRIMARY KEY, name TEXT)")
        with running_api(env, root / "api.log") as (api, url):
            connection_ids = []
            with httpx.Client(base_url=url, timeout=120) as client:
                for i in range(args.connections):
                    created = client.post(
                        "/api/v1/database-connections",
                        json={"alias": f"load-{i}", "connection_uri": f"sqlite:///{source}"},
                    )
                    created.raise_for_status()
                    connection_ids.append(created.json()["id"])
                    body = {"db_connection_id": connection_ids[-1]}
                    client.post(REFRESH, json=body).raise_for_status()
            cpu_before = process_cpu_s(api.pid)
            result = run_load(
                url,
                connection_ids,
                clients=args.clients,
                requests=args.requests,
                deadline_s=args.deadline_s,
            )
            api_cpu_s = process_cpu_s(api.pid) - cpu_before
            keys = [(c, *k) for c in connection_ids for k in stored_keys(env, c)]
            runs = _refresh_runs(env)

    failures = result.failures(args.tables)
    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": args.tables,
        "connections": args.connections,
        **result.summary(),
        "failed": len(failures),
        "failures": [asdict(f) for f in failures[:10]],
        "duplicates": len(keys) - len(set(keys)),
        "stored_tables": len(set(keys)),  # over all connections
        "refresh_runs": runs,
        "api_cpu_s": round(api_cpu_s, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
    }
    path = RESULT if args.connections == 1 else RESULT.with_name(f"load_{args.connections}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['requests']} requests from {args.clients} clients in {report['wall_s']} s: "
        f"{report['throughput_rps']} requests/s, {report['failed']} failed, "
        f"{report['duplicates']} duplicates, {runs} refresh runs"
    )
    for kind in (*KINDS, "all"):
        stats = report.get(f"{kind}_ms")
        if stats:
            print(f"  {kind:8} n={stats['n']:4} p50 {stats['p50']} ms  p99 {stats['p99']} ms")
    print(f"written to {path.relative_to(HERE.parent)}")
    return (
        0
        if not failures and not report["duplicates"] and len(result.answers) == args.requests
        else 1
    )


def _refresh_runs(env: dict[str, str]) -> int:
    import dagster as dg

    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        return instance.get_runs_count(dg.RunsFilter(job_name="refresh_table_descriptions"))
    finally:
        instance.dispose()


if __name__ == "__main__":
    sys.exit(main())
