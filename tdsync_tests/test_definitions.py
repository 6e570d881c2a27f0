"""The code location, as the UI shows it: one snapshot of its jobs, assets, checks, schedules and
sensors; and it loads the way `dagster definitions validate -w workspace.yaml` and `dg check defs`
load it, with no deprecation warning."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

import tdsync.definitions
from tdsync.defs.resources import SourceDatabasesResource, StoreResource

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNING_SCHEDULE, RUNNING_SENSOR = dg.DefaultScheduleStatus.RUNNING, dg.DefaultSensorStatus.RUNNING


def snapshot(repo: dg.RepositoryDefinition) -> dict:
    """What the UI lists, with the names, partitions, tags and defaults a person sees."""
    graph = repo.asset_graph
    return {
        "jobs": {
            job.name: {
                "tags": dict(job.tags),
                "ops": sorted(node.name for node in job.nodes),
                "partitions": getattr(job.partitions_def, "name", None),
            }
            for job in repo.get_all_jobs()
            if not job.name.startswith("__")  # Dagster's implicit asset job
        },
        "assets": {
            key.to_user_string(): getattr(graph.get(key).partitions_def, "name", None)
            for key in graph.get_all_asset_keys()
        },
        "checks": sorted(
            (key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys
        ),
        "schedules": {
            s.name: (s.cron_schedule, s.execution_timezone, s.job_name, s.default_status)
            for s in repo.schedule_defs
        },
        "sensors": {s.name: s.default_status for s in repo.sensor_defs},
    }


def test_code_location_snapshot() -> None:
    assert snapshot(tdsync.definitions.defs().get_repository_def()) == {
        "jobs": {
            # The refresh job is the partitioned asset's job: asset and checks, one partition
            # per connection.
            "refresh_table_descriptions": {
                "tags": {"tdsync/trigger": "ui"},
                "ops": ["table_description_checks", "table_descriptions"],
                "partitions": "tdsync_connections",
            },
            "scan_table_descriptions": {
                "tags": {"tdsync/trigger": "ui"},
                "ops": ["scan_tables", "start_scan"],
                "partitions": None,
            },
        },
        "assets": {"table_descriptions": "tdsync_connections"},
        "checks": [
            ("table_descriptions", "no_failed_descriptions"),
            ("table_descriptions", "no_scan_past_its_lease"),
        ],
        # Both tick every minute and start a run only for connections whose own cron fires.
        "schedules": {
            "refresh_connections_on_schedule": (
                "* * * * *",
                "UTC",
                "refresh_table_descriptions",
                RUNNING_SCHEDULE,
            ),
            "scan_connections_on_schedule": (  # issue 17
                "* * * * *",
                "UTC",
                "scan_table_descriptions",
                RUNNING_SCHEDULE,
            ),
        },
        "sensors": {
            "settle_failed_runs": RUNNING_SENSOR,
            "settle_cancelled_runs": RUNNING_SENSOR,
            "sync_connection_partitions": RUNNING_SENSOR,
            "check_table_descriptions": RUNNING_SENSOR,
            "settle_orphaned_runs": RUNNING_SENSOR,
            "scan_what_refreshes_found": RUNNING_SENSOR,  # issue 17
        },
    }


def _config_fields(job: dg.JobDefinition) -> set[str]:
    fields: set[str] = set()
    for config_type in job.run_config_schema.all_config_types():
        fields |= set(getattr(config_type, "fields", None) or {})
    return fields


def test_the_refresh_asks_for_no_config_to_type_and_the_scan_for_its_connection() -> None:
    repo = tdsync.definitions.defs().get_repository_def()
    # Materializing a partition needs no connection id typed in (the partition names it).
    assert "db_connection_id" not in _config_fields(repo.get_job("refresh_table_descriptions"))
    assert "db_connection_id" in _config_fields(repo.get_job("scan_table_descriptions"))


def test_outside_local_run_monitoring_replaces_the_orphaned_run_sensor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # There the API and CLI submit their runs to run workers, which Dagster's run monitoring
    # watches; only `local` executes runs in a process that can die unseen.
    monkeypatch.setenv("TDSYNC_DEPLOYMENT", "production")
    sensors = snapshot(tdsync.definitions.defs().get_repository_def())["sensors"]
    assert "settle_orphaned_runs" not in sensors
    assert {"settle_failed_runs", "settle_cancelled_runs"} <= set(sensors)


def test_dagster_definitions_validate_passes(tdsync_env: dict[str, str]) -> None:
    dagster_cli = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster_cli), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env={**os.environ, **tdsync_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    # workspace.yaml's one code location, by the name runs record and the UI re-executes by.
    assert "Validation successful for code location tdsync.definitions." in (
        result.stdout + result.stderr
    )
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_dg_check_defs_passes_and_loading_warns_of_nothing_deprecated(
    tdsync_env: dict[str, str],
) -> None:
    dg_cli = Path(sys.executable).with_name("dg")
    result = subprocess.run(
        [str(dg_cli), "check", "defs"],
        cwd=REPO_ROOT,
        env={**os.environ, **tdsync_env, "VIRTUAL_ENV": str(Path(sys.executable).parents[1])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "All definitions loaded successfully" in result.stdout + result.stderr

    loaded = subprocess.run(
        [
            sys.executable,
            *("-W", "error::DeprecationWarning:dagster"),
            *("-W", "error::dagster.SupersessionWarning"),
            *("-c", "import tdsync.definitions as d; d.defs().get_repository_def()"),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **tdsync_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr[-4000:]


def test_resources_show_where_their_settings_come_from(tdsync_env: dict[str, str]) -> None:
    resources = tdsync.definitions.defs().resources
    catalogue = resources["catalogue"]
    # Bound to the variables, not to their values: the UI never shows the key or the URI.
    assert catalogue.encryption_key == dg.EnvVar("TDSYNC_ENCRYPTION_KEY")
    assert catalogue.mongo_uri == dg.EnvVar("TDSYNC_MONGO_URI")
    # Read when a run starts.
    with dg.build_resources({"catalogue": catalogue}) as started:
        assert started.catalogue.settings().mongo_db == tdsync_env["TDSYNC_MONGO_DB"]
    # Set as fields, a test or an operator needs no environment variable.
    assert SourceDatabasesResource(timeout_s=1.5).settings().source_timeout_s == 1.5
    assert StoreResource(lease_wait_s=2).settings().lease_wait_s == 2
