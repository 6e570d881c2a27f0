"""A scan run killed with SIGKILL half-way: `tdsync scan` from the command line, and the detached
run that `POST /sync-schemas` starts.

What the dead run finished is kept; what it left SYNCHRONIZING turns FAILED (at once when the API
saw its run die, else at the first refresh or scan after its scan lease); its connection lease
does not hold up the next run for long (at once when the API saw it die, else when it expires);
people's descriptions survive; and a new scan converges on a fully SCANNED catalogue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.models import Status, as_utc, utcnow
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import PG_ADMIN_URL, _server_database, execute, until
from tdsync_tests.test_api.live import ApiProcess, unique
from tdsync_tests.test_reliability.conftest import duplicates

# The dead holder's connection lease lasts LEASE_TTL_S (two minutes): shortened in the child.
CLI_SCAN = textwrap.dedent(
    """
    import sys
    from tdsync.services import connection_lease
    connection_lease.LEASE_TTL_S, connection_lease.RENEW_EVERY_S = 2.0, 0.5
    from tdsync.cli.main import main
    sys.exit(main(["scan", sys.argv[1]]))
    """
)
SLOW = "CREATE OR REPLACE VIEW z_slow AS SELECT pg_sleep(60)::text AS nap"
FAST = "CREATE OR REPLACE VIEW z_slow AS SELECT 'awake'::text AS nap"


@pytest.fixture
def slow_source() -> Iterator[str]:
    """Two quick tables and a view that takes a minute to read."""
    server = _server_database(PG_ADMIN_URL, "PostgreSQL at 127.0.0.1:5432")
    url = next(server)
    execute(url, "CREATE TABLE a_quick (id int PRIMARY KEY)", "CREATE TABLE b_quick (id int)", SLOW)
    yield url
    next(server, None)


def end_queries(url: str, containing: str) -> None:
    database = sa.make_url(url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d "
                "AND query LIKE :q AND pid <> pg_backend_pid()"
            ),
            {"d": database, "q": f"%{containing}%"},
        )
    admin.dispose()


def statuses(store: CatalogueStore, connection_id: str) -> dict[str, Status]:
    return {d.table_name: d.status for d in store.list_descriptions(connection_id)}


MID_SCAN = {"a_quick": Status.SCANNED, "b_quick": Status.SCANNED, "z_slow": Status.SYNCHRONIZING}


def test_cli_scan_killed_mid_scan_recovers_and_a_rescan_converges(
    store: CatalogueStore,
    slow_source: str,
    tdsync_env: dict[str, str],
    tmp_path: Path,
    settings: Settings,
):
    connection_id = store.add_connection(alias="slow", connection_uri=slow_source).id
    runs.refresh(connection_id, trigger="cli", settings=settings)
    for row in store.list_descriptions(connection_id):
        store.update_description(row.id, {"description": f"about {row.table_name}"})

    env = {**os.environ, "TDSYNC_SCAN_LEASE_S": "3", "TDSYNC_SOURCE_TIMEOUT_S": "120"}
    with open(tmp_path / "scan.log", "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", CLI_SCAN, connection_id], env=env, stdout=log, stderr=log
        )
    try:
        until(lambda: statuses(store, connection_id) == MID_SCAN, "the slow view is being read")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    held_by_dead_run = store.connection_lease(connection_id)["holder"]
    raw = store.descriptions.find_one({"db_connection_id": connection_id, "table_name": "z_slow"})
    expiry = as_utc(raw["scan_lease_expires_at"])
    until(lambda: utcnow() > expiry, "the dead scan's lease has run out", timeout_s=10)

    started = time.monotonic()
    runs.refresh(
        connection_id, trigger="cli", settings=settings
    )  # waits out the dead run's connection lease
    refresh_s = time.monotonic() - started
    after_refresh = {d.table_name: d for d in store.list_descriptions(connection_id)}
    # The dead run's query goes on server-side until its statement timeout (120 s here) and
    # holds a lock on the view: ended, so that the view can be replaced.
    end_queries(slow_source, "FROM z_slow")
    execute(slow_source, FAST)
    rescan = runs.scan(connection_id, trigger="cli", settings=settings)
    after_rescan = {d.table_name: d for d in store.list_descriptions(connection_id)}

    assert child.returncode == -signal.SIGKILL
    assert held_by_dead_run is not None
    assert refresh_s < 15  # the lease expired; it did not block the refresh for good
    assert after_refresh["z_slow"].status == Status.FAILED
    assert "lease expired" in after_refresh["z_slow"].error_message
    assert after_refresh["a_quick"].status == Status.SCANNED  # the dead run's work is kept
    assert rescan["scanned"] == 3 and rescan["failed"] == 0
    assert {n: d.status for n, d in after_rescan.items()} == dict.fromkeys(
        ("a_quick", "b_quick", "z_slow"), Status.SCANNED
    )
    assert {n: d.description for n, d in after_rescan.items()} == {
        n: f"about {n}" for n in ("a_quick", "b_quick", "z_slow")
    }
    assert after_rescan["z_slow"].examples == [{"nap": "awake"}]
    assert store.connection_lease(connection_id)["holder"] is None
    assert duplicates(store, connection_id) == []


def launched_scans(home: str) -> list[int]:
    """Pids of the detached scan runs (`python -m tdsync.defs.scan_process HOME/scans/…`)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tdsync.defs.scan_process" in cmdline and any(
            home.encode() in part for part in cmdline
        ):
            found.append(int(proc.name))
    return found


def test_api_scan_run_killed_is_failed_at_once_and_frees_its_connection(
    reliability_api: ApiProcess, reliability_store: CatalogueStore, slow_source: str
):
    home = reliability_api.env["TDSYNC_HOME"]
    with reliability_api.client() as client:
        created = client.post(
            "/api/v1/database-connections",
            json={"alias": unique("slow"), "connection_uri": slow_source},
        )
        connection_id = created.json()["id"]
        body = {"db_connection_id": connection_id}
        claimed = client.post("/api/v1/table-descriptions/sync-schemas", json=body)
        until(
            lambda: statuses(reliability_store, connection_id) == MID_SCAN,
            "the slow view is being read",
        )
        [pid] = launched_scans(home)
        os.kill(pid, signal.SIGKILL)
        until(
            lambda: statuses(reliability_store, connection_id)["z_slow"] == Status.FAILED,
            "the API sees its scan run die",
            timeout_s=10,
        )
        started = time.monotonic()
        refreshed = client.post("/api/v1/table-descriptions/refresh", json=body)
        refresh_s = time.monotonic() - started

    assert created.status_code == 201 and claimed.status_code == 201
    assert {d["status"] for d in claimed.json()} == {Status.SYNCHRONIZING}
    rows = {d["table_name"]: d for d in refreshed.json()}
    assert refreshed.status_code == 201
    assert refresh_s < 10  # not held up by the dead run's connection lease (two minutes)
    assert "ended before finishing" in rows["z_slow"]["error_message"]
    assert rows["a_quick"]["status"] == rows["b_quick"]["status"] == Status.SCANNED
    assert duplicates(reliability_store, connection_id) == []
