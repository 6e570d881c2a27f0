"""The code location holds the triggers, the catalogue asset and its checks, as the UI shows them.

(`dagster definitions validate -w workspace.yaml` is pinned by tdsync_tests/test_definitions.py.)
"""

import dagster as dg

import tdsync.definitions


def test_code_location_has_the_triggers_the_catalogue_asset_and_its_checks():
    repo = tdsync.definitions.defs().get_repository_def()

    assert {s.name: s.default_status for s in repo.schedule_defs} == {
        "refresh_connections_on_schedule": dg.DefaultScheduleStatus.RUNNING,
        "scan_connections_on_schedule": dg.DefaultScheduleStatus.RUNNING,  # issue 17
    }
    assert {s.name: s.default_status for s in repo.sensor_defs} == {
        "settle_failed_runs": dg.DefaultSensorStatus.RUNNING,
        "settle_cancelled_runs": dg.DefaultSensorStatus.RUNNING,
        "sync_connection_partitions": dg.DefaultSensorStatus.RUNNING,
        "check_table_descriptions": dg.DefaultSensorStatus.RUNNING,
        "settle_orphaned_runs": dg.DefaultSensorStatus.RUNNING,
        "scan_what_refreshes_found": dg.DefaultSensorStatus.RUNNING,  # issue 17
    }
    assert {"refresh_table_descriptions", "scan_table_descriptions"} <= {
        job.name for job in repo.get_all_jobs()
    }
    assert dg.AssetKey("table_descriptions") in repo.asset_graph.get_all_asset_keys()
    assert {key.name for key in repo.asset_graph.asset_check_keys} == {
        "no_failed_descriptions",
        "no_scan_past_its_lease",
    }


def test_outside_local_run_monitoring_replaces_the_orphaned_run_sensor(monkeypatch):
    # There the API and CLI submit their runs to run workers, which Dagster's run monitoring
    # watches; only `local` executes runs in a process that can die unseen.
    monkeypatch.setenv("TDSYNC_DEPLOYMENT", "production")
    repo = tdsync.definitions.defs().get_repository_def()
    assert "settle_orphaned_runs" not in {s.name for s in repo.sensor_defs}
    assert {"settle_failed_runs", "settle_cancelled_runs"} <= {s.name for s in repo.sensor_defs}
