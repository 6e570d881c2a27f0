"""A refresh or scan run whose process was killed is marked failed, so its connection is free again."""

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
from tdsync.defs.sensors import orphan_reason, settle_orphaned_runs
from tdsync.defs.tags import CONNECTION_TAG

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
WAIT_S = 300


def lease(holder, expires_in_s, last=None):
    return {"holder": holder, "expires_at": NOW + timedelta(seconds=expires_in_s), "last": last}


def test_a_run_holding_a_live_lease_is_alive():
    assert orphan_reason(lease("r1", 60), "r1", NOW - timedelta(hours=3), NOW, WAIT_S) is None


def test_a_run_whose_lease_expired_is_orphaned():
    reason = orphan_reason(lease("r1", -1), "r1", NOW - timedelta(minutes=5), NOW, WAIT_S)
    assert reason and "expired" in reason


def test_a_run_that_released_its_lease_long_ago_but_never_ended_is_orphaned():
    last = {"holder": "r1", "released_at": NOW - timedelta(minutes=5)}
    reason = orphan_reason(lease(None, -100, last), "r1", NOW - timedelta(minutes=6), NOW, WAIT_S)
    assert reason and "released" in reason


def test_a_run_that_just_released_its_lease_is_given_time_to_finish():
    last = {"holder": "r1", "released_at": NOW - timedelta(seconds=5)}
    assert (
        orphan_reason(lease(None, -100, last), "r1", NOW - timedelta(minutes=1), NOW, WAIT_S)
        is None
    )


def test_a_run_still_waiting_for_the_lease_is_alive_until_it_outlives_the_longest_wait():
    other = lease("r2", 60)
    assert orphan_reason(other, "r1", NOW - timedelta(seconds=WAIT_S), NOW, WAIT_S) is None
    assert orphan_reason(other, "r1", NOW - timedelta(seconds=WAIT_S + 121), NOW, WAIT_S)
    assert orphan_reason(None, "r1", NOW - timedelta(hours=1), NOW, WAIT_S)


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
