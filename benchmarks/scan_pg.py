"""Benchmark (not a test): scan a 1,000-table PostgreSQL database through the scan job.

    .venv/bin/python benchmarks/scan_pg.py [--tables 1000] [--runs 3]

Builds `tdsync_bench_scan` (1,000 tables of 8 columns with a primary key, a foreign key and 20
rows each, analysed), registers it in a throwaway catalogue (the embedded SecantusDB, in its own
process) and times `tdsync.defs.runs.scan` — the `scan_table_descriptions` job in this process, recorded
on a throwaway Dagster instance — for a full scan (keys, DDL, categories, examples) and a
metadata-only scan (no data read). For each: wall time, statements sent to the source (counted
with a SQLAlchemy `before_cursor_execute` listener) and the process's peak resident memory.
Prints a table and writes benchmarks/results/scan_pg.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import sqlalchemy as sa
from cryptography.fernet import Fernet
from probes import peak_rss_mb

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
DATABASE = "tdsync_bench_scan"
RESULTS = Path(__file__).resolve().parent / "results" / "scan_pg.json"
ROWS = 20
SCENARIOS = {
    "full": {},
    "metadata only": {"example_rows": 0, "max_categories": 0},
}

BUILD = """
DO $$
BEGIN
    FOR i IN 0 .. %(tables)s - 1 LOOP
        EXECUTE format(
            'CREATE TABLE %%I (id integer PRIMARY KEY,'
            ' parent_id integer REFERENCES %%I (id), name varchar(64) NOT NULL,'
            ' status varchar(16), amount numeric(12, 2), created_at timestamptz,'
            ' is_active boolean, note text)',
            't' || lpad(i::text, 4, '0'), 't' || lpad((i / 10 * 10)::text, 4, '0'));
        EXECUTE format(
            'INSERT INTO %%I SELECT g, CASE WHEN g > 1 THEN 1 END, ''row '' || g,'
            ' (ARRAY[''new'', ''paid'', ''shipped''])[1 + mod(g, 3)], g * 1.25,'
            ' timestamptz ''2024-01-01'' + g * interval ''1 day'', mod(g, 2) = 0,'
            ' repeat(''note '', 1 + mod(g, 3)) FROM generate_series(1, %(rows)s) g',
            't' || lpad(i::text, 4, '0'));
    END LOOP;
END $$;
"""


def build(tables: int) -> str:
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {DATABASE}")
    admin.close()
    conn = psycopg2.connect(ADMIN_DSN.replace("dbname=postgres", f"dbname={DATABASE}"))
    with conn.cursor() as cur:
        cur.execute(BUILD, {"tables": tables, "rows": ROWS})
    conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")
    conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DATABASE}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tdsync-bench-scan-"))
    os.environ.update(
        {
            "TDSYNC_HOME": str(work / "home"),
            "DAGSTER_HOME": str(work / "dagster"),
            "TDSYNC_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "TDSYNC_MONGO_DB": "bench",
        }
    )
    os.environ.pop("TDSYNC_MONGO_URI", None)
    import dagster as dg

    from tdsync.config.settings import Settings
    from tdsync.defs import runs
    from tdsync.store.client import shared_store
    from tdsync.store.embedded import stop_embedded

    settings = Settings.from_env()  # the environment set above, read once

    started = time.perf_counter()
    uri = build(args.tables)
    print(f"built {args.tables} tables in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    sent = {"n": 0}

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if conn.engine.url.database == DATABASE:
            sent["n"] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    store = shared_store(settings)  # starts the embedded SecantusDB as its own process
    instance = dg.DagsterInstance.ephemeral()
    try:
        connection_id = store.add_connection(alias="bench", connection_uri=uri).id
        runs.refresh(connection_id, trigger="cli", dagster_instance=instance, settings=settings)
        # Warm-up: imports, the dialect's first connection, the job's first run.
        runs.scan(
            connection_id,
            trigger="cli",
            table_names=["t0000"],
            dagster_instance=instance,
            settings=settings,
        )
        results: dict[str, dict] = {}
        for scenario, config in SCENARIOS.items():
            walls, queries = [], []
            for _ in range(args.runs):
                sent["n"] = 0
                t0 = time.perf_counter()
                summary = runs.scan(
                    connection_id,
                    trigger="cli",
                    options=config,
                    dagster_instance=instance,
                    settings=settings,
                )
                walls.append(time.perf_counter() - t0)
                queries.append(sent["n"])
                assert summary["scanned"] == args.tables, summary
            results[scenario] = {
                "wall_s": {
                    "min": min(walls),
                    "median": statistics.median(walls),
                    "max": max(walls),
                },
                "source_queries": queries[-1],
                "queries_per_table": round(queries[-1] / args.tables, 2),
                "tables_per_s": round(args.tables / statistics.median(walls), 1),
            }
        results_doc = {
            "benchmark": "scan of a PostgreSQL database through the scan_table_descriptions job",
            "tables": args.tables,
            "columns_per_table": 8,
            "rows_per_table": ROWS,
            "runs": args.runs,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "peak_rss_mb": round(peak_rss_mb(), 1),
            # Other work on the machine inflates wall times: the 1-minute load at the end.
            "load_average_1m": round(os.getloadavg()[0], 2),
            "scenarios": results,
        }
    finally:
        stop_embedded(Path(os.environ["TDSYNC_HOME"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results_doc, indent=2) + "\n")
    print(f"{'scenario':<15}{'wall median (min-max) s':>26}{'queries':>10}{'tables/s':>10}")
    for scenario, r in results.items():
        w = r["wall_s"]
        spread = f"{w['median']:.2f} ({w['min']:.2f}-{w['max']:.2f})"
        print(f"{scenario:<15}{spread:>26}{r['source_queries']:>10}{r['tables_per_s']:>10}")
    print(
        f"peak RSS {results_doc['peak_rss_mb']} MB, load average {results_doc['load_average_1m']}; "
        f"written to {RESULTS}"
    )


if __name__ == "__main__":
    main()
