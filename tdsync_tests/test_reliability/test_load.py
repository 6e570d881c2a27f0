"""Load, the small version of benchmarks/load.py: 10 clients, 200 requests (refreshes and lists of
two connections) on one `tdsync api` process. Every answer is a success with every table once,
and the catalogue holds each table once."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path

from tdsync.store import CatalogueStore
from tdsync_tests.test_api.live import ApiProcess, unique
from tdsync_tests.test_reliability.conftest import duplicates

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "load.py"
TABLES = 20


def load_module():
    spec = importlib.util.spec_from_file_location("tdsync_benchmark_load", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_ten_clients_refreshing_and_listing_all_succeed_without_duplicates(
    reliability_api: ApiProcess, reliability_store: CatalogueStore, tmp_path: Path
):
    load = load_module()
    source = tmp_path / "load.db"
    with sqlite3.connect(source) as db:
        for i in range(TABLES):
            db.execute(f"CREATE TABLE table_{i:02} (id INTEGER PRIMARY KEY)")
    with reliability_api.client() as client:
        connection_ids = [
            client.post(
                "/api/v1/database-connections",
                json={"alias": unique("load"), "connection_uri": f"sqlite:///{source}"},
            ).json()["id"]
            for _ in range(2)
        ]
        for connection_id in connection_ids:  # lists answer every table from the start
            client.post(load.REFRESH, json={"db_connection_id": connection_id})

    result = load.run_load(
        reliability_api.url, connection_ids, clients=10, requests=200, deadline_s=240
    )

    assert len(result.answers) == 200
    assert result.failures(TABLES) == []
    assert {a.kind for a in result.answers} == {"refresh", "list"}
    for connection_id in connection_ids:
        assert duplicates(reliability_store, connection_id) == []
        assert len(reliability_store.list_descriptions(connection_id)) == TABLES
    summary = result.summary()
    assert summary["refresh_ms"]["n"] == summary["list_ms"]["n"] == 100
