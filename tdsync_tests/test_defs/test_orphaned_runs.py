"""A refresh or scan run whose process was killed is marked failed, so its connection is free again.

The orphan rules themselves (orphan_reason) are in the fast tier: test_sensor_decisions.py."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.defs.resources import StoreResource
from tdsync.defs.sensors import settle_orphaned_runs
from tdsync.defs.tags import CONNECTION_TAG


def test_killed_api_process_run_is_marked_failed_and_frees_its_connection(
    store, tdsync_env, silent_port, sqlite_path, settings: Settings
):
    conn = store.add_connection(
        alias="hangs", connection_uri=f"postgresql://reader:pw@127.0.0.1:{silent_port}/db"
    )
    env = {**os.environ, **tdsync_env, "TDSYNC_SOURCE_TIMEOUT_S": "60"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tdsync.defs import runs; from tdsync.config.settings import Settings; "
            f"runs.refresh({conn.id!r}, trigger='webhook', settings=Settings.from_env())",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    instance = runs.instance(settings)
    try:
        deadline = time.monotonic() + 60
        started = []
        while not started and time.monotonic() < deadline:
            started = instance.get_run_records(
                filters=dg.RunsFilter(
                    statuses=[dg.DagsterRunStatus.STARTED], tags={CONNECTION_TAG: conn.id}
                )
            )
            time.sleep(0.1)
        assert started, "the refresh run never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_id = started[0].dagster_run.run_id
    assert store.connection_lease(conn.id)["holder"] == run_id

    context = dg.build_sensor_context(instance=instance, resources={"catalogue": StoreResource()})
    assert "none orphaned" in settle_orphaned_runs(context).skip_message  # its lease is still live

    # Two minutes later nobody has renewed the lease: the run is dead.
    store.db["connection_leases"].update_one(
        {"_id": conn.id}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    result = settle_orphaned_runs(
        dg.build_sensor_context(instance=instance, resources={"catalogue": StoreResource()})
    )
    assert run_id in result.skip_message
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE

    # The connection is usable again: a refresh of it runs (and fails only on its own source).
    store.update_connection(conn.id, connection_uri=f"sqlite:///{sqlite_path}")
    assert runs.refresh(conn.id, trigger="cli", settings=settings)["added"] == 0
