"""A scan run killed mid-scan (SIGKILL) leaves no row SYNCHRONIZING once its lease has run out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.models import Status, as_utc, utcnow
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import until
from tdsync_tests.test_scan.conftest import run_statements

CHILD = textwrap.dedent(
    """
    import sys
    from tdsync.defs import runs
    from tdsync.services import connection_lease
    from tdsync.config.settings import Settings
    # Stands in for the time a dead holder's connection lease takes to expire (two minutes).
    connection_lease.LEASE_TTL_S = 1.0
    runs.scan(sys.argv[1], trigger="cli", settings=Settings.from_env())
    """
)


def test_killed_scan_leaves_nothing_synchronizing_after_its_lease(
    store: CatalogueStore, sources_of, tdsync_env: dict[str, str], tmp_path, settings: Settings
) -> None:
    url = sources_of("postgresql").empty()
    run_statements(
        url,
        [
            "CREATE TABLE a_quick (id integer PRIMARY KEY)",
            "CREATE TABLE b_quick (id integer PRIMARY KEY)",
            # Reading it takes a minute: the scan is still at work when it is killed.
            "CREATE VIEW z_slow AS SELECT pg_sleep(60)::text AS nap",
        ],
    )
    connection_id = store.add_connection(alias="slow", connection_uri=url).id
    runs.refresh(connection_id, trigger="cli", settings=settings)

    env = {**os.environ, "TDSYNC_SCAN_LEASE_S": "3", "TDSYNC_SOURCE_TIMEOUT_S": "120"}
    with open(tmp_path / "child.log", "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, connection_id], env=env, stdout=log, stderr=log
        )
    try:

        def statuses() -> dict[str, Status]:
            return {d.table_name: d.status for d in store.list_descriptions(connection_id)}

        until(
            lambda: (
                statuses()
                == {
                    "a_quick": Status.SCANNED,
                    "b_quick": Status.SCANNED,
                    "z_slow": Status.SYNCHRONIZING,
                }
            ),
            "the quick tables are saved while the slow view is still being read",
            poll_s=0.1,
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    slow = store.descriptions.find_one({"db_connection_id": connection_id, "table_name": "z_slow"})
    assert slow["status"] == Status.SYNCHRONIZING  # the dead run cannot settle it...
    expiry = as_utc(slow["scan_lease_expires_at"])
    assert expiry <= utcnow() + timedelta(seconds=3)
    until(lambda: utcnow() > expiry, "the dead run's lease has run out", timeout_s=10, poll_s=0.1)

    runs.refresh(connection_id, trigger="cli", settings=settings)  # ...the next refresh does

    rows = {d.table_name: d for d in store.list_descriptions(connection_id)}
    assert Status.SYNCHRONIZING not in {d.status for d in rows.values()}
    assert rows["z_slow"].status == Status.FAILED
    assert "lease expired" in rows["z_slow"].error_message
    assert rows["a_quick"].status == rows["b_quick"].status == Status.SCANNED
