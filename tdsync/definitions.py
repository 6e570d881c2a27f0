"""Top of the layers: The Dagster code location: what tdsync/defs defines, bound to tdsync's resources."""

from __future__ import annotations

import logging

import dagster as dg

from tdsync.config.deployment import deployment, executor
from tdsync.defs import schedules, sensors
from tdsync.defs.assets import table_description_checks
from tdsync.defs.refresh_job import refresh_table_descriptions, table_descriptions
from tdsync.defs.resources import default_resources
from tdsync.defs.scan_job import scan_table_descriptions


@dg.logger(description="Run events as records of the Python logger `tdsync.defs.runs`.")
def python_logging(init_context: dg.InitLoggerContext) -> logging.Logger:
    # Instead of Dagster's console logger: the API and CLI execute runs in their own process
    # and must not print every event on their terminal; where the records go is the process's
    # logging configuration. Every event is stored on the instance for the UI either way.
    return logging.getLogger("tdsync.defs.runs")


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[table_descriptions],
        asset_checks=[table_description_checks],
        jobs=[refresh_table_descriptions, scan_table_descriptions],
        schedules=[
            schedules.refresh_connections_on_schedule,
            schedules.scan_connections_on_schedule,
        ],
        sensors=[
            sensors.settle_failed_runs,
            sensors.settle_cancelled_runs,
            sensors.sync_connection_partitions,
            sensors.check_table_descriptions,
            sensors.scan_what_refreshes_found,
            # Only `local` executes runs in the API's or CLI's own process, where Dagster's run
            # monitoring cannot see them die; elsewhere run workers do, under run monitoring.
            *([sensors.settle_orphaned_runs] if deployment() == "local" else []),
        ],
        resources=default_resources(),
        executor=executor(),
        loggers={"console": python_logging},
    )
