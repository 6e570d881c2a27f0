"""The code location, as the UI shows it: one snapshot of its jobs (tags, op graph, partitions),
assets, checks, schedules and sensors, the one place that lists them (fast tier).

That `dagster definitions validate` and `dg check defs` load it, with no deprecation warning:
test_definitions_load.py (they start the CLIs).
"""

import dagster as dg
import pytest
from cryptography.fernet import Fernet

import tdsync.definitions
from tdsync.defs.resources import SourceDatabasesResource, StoreResource

RUNNING_SCHEDULE, RUNNING_SENSOR = dg.DefaultScheduleStatus.RUNNING, dg.DefaultSensorStatus.RUNNING


def snapshot(repo: dg.RepositoryDefinition) -> dict:
    """What the UI lists, with the names, partitions, tags and defaults a person sees."""
    graph = repo.asset_graph
    return {
        "jobs": {
            job.name: {
                "tags": dict(job.tags),
                # Each op, with the ops whose outputs it takes.
                "ops": {
                    (op.alias or op.name): sorted(dep.node for dep in inputs.values())
                    for op, inputs in job.graph.dependencies.items()
                },
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
        "sensors": {
            s.name: (s.default_status, s.minimum_interval_seconds) for s in repo.sensor_defs
        },
    }


def test_code_location_snapshot() -> None:
    assert snapshot(tdsync.definitions.defs().get_repository_def()) == {
        "jobs": {
            # The refresh job is the partitioned asset's job: asset and checks, one partition
            # per connection.
            "refresh_table_descriptions": {
                "tags": {"tdsync/trigger": "ui"},
                "ops": {
                    "table_descriptions": [],
                    "table_description_checks": ["table_descriptions"],
                },
                "partitions": "tdsync_connections",
            },
            "scan_table_descriptions": {
                "tags": {"tdsync/trigger": "ui"},
                "ops": {"start_scan": [], "scan_tables": ["start_scan"]},
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
        # Each with how often it is evaluated (seconds).
        "sensors": {
            "settle_failed_runs": (RUNNING_SENSOR, 15),
            "settle_cancelled_runs": (RUNNING_SENSOR, 15),
            "sync_connection_partitions": (RUNNING_SENSOR, 60),
            "check_table_descriptions": (RUNNING_SENSOR, 60),
            "settle_orphaned_runs": (RUNNING_SENSOR, 60),
            "scan_what_refreshes_found": (RUNNING_SENSOR, 30),  # issue 17
        },
    }


def test_the_refresh_schedule_says_it_refreshes_each_connection_on_its_own_cron() -> None:
    repo = tdsync.definitions.defs().get_repository_def()
    description = repo.get_schedule_def("refresh_connections_on_schedule").description

    assert "only when its own refresh_schedule" in description
    assert "next refresh" in description


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


def test_resources_show_where_their_settings_come_from(monkeypatch: pytest.MonkeyPatch) -> None:
    tdsync_env = {
        "TDSYNC_MONGO_URI": "mongodb://127.0.0.1:1/?retryWrites=false",  # never connected to
        "TDSYNC_MONGO_DB": "tdsync_definitions",
        "TDSYNC_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    for name, value in tdsync_env.items():
        monkeypatch.setenv(name, value)
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
