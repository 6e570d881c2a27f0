"""Shell (Dagster): Per-connection schedules: two schedules that ask, every minute, which connection is due, one
for refreshes (`refresh_schedule`) and one for changed-only scans (`scan_schedule`).

Each connection's crons (UTC) live in the store and are read on every tick, so adding or editing
one through the API or CLI takes effect at the next minute, without a restart.
"""

import dagster as dg

from tdsync.defs.partitions import ensure_partition, partition_key
from tdsync.defs.refresh_job import refresh_table_descriptions
from tdsync.defs.resources import StoreResource, failures_as_dagster
from tdsync.defs.scan_job import ScanConfig, scan_table_descriptions
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.domain.cron import due_refreshes, moment

SCHEDULE_TAG = "tdsync/refresh_schedule"
NEXT_REFRESH_TAG = "tdsync/next_refresh"


@dg.schedule(
    name="refresh_connections_on_schedule",
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    job=refresh_table_descriptions,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Ticks every minute, but refreshes a connection only when its own refresh_schedule "
        "(cron, UTC) fires: one run per due connection. A tick that starts nothing lists every "
        "connection's cron and next refresh in its reason; each run carries them as the tags "
        "tdsync/refresh_schedule and tdsync/next_refresh, and the connection's table_descriptions "
        "partition shows them in its metadata (also `tdsync connections list`)."
    ),
)
def refresh_connections_on_schedule(
    context: dg.ScheduleEvaluationContext, catalogue: StoreResource
) -> list[dg.RunRequest] | dg.SkipReason:
    with failures_as_dagster():
        connections = catalogue.get_store().list_connections()
    check = due_refreshes(connections, context.scheduled_execution_time)
    for alias, problem in check.invalid.items():
        # One bad cron must not stop the others: it is reported and skipped.
        context.log.error(f"connection {alias!r} is not scheduled: {problem}")
    if not check.due:
        return dg.SkipReason(check.skip_reason())
    keys = {conn.id: partition_key(conn) for conn in connections}
    for due in check.due:
        # A connection registered since the partition sensor's last tick has no partition yet.
        ensure_partition(context.instance, keys[due.connection_id])
    return [
        dg.RunRequest(
            run_key=due.run_key,
            partition_key=keys[due.connection_id],
            tags={
                CONNECTION_TAG: due.connection_id,
                TRIGGER_TAG: "schedule",
                SCHEDULE_TAG: due.refresh_schedule,
                NEXT_REFRESH_TAG: moment(due.next_fire),
            },
        )
        for due in check.due
    ]


@dg.schedule(
    name="scan_connections_on_schedule",
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    job=scan_table_descriptions,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Runs a changed-only scan of each connection whose scan_schedule (cron, UTC) fires in "
        "this minute; one run per due connection."
    ),
)
def scan_connections_on_schedule(
    context: dg.ScheduleEvaluationContext, catalogue: StoreResource
) -> list[dg.RunRequest] | dg.SkipReason:
    with failures_as_dagster():
        connections = catalogue.get_store().list_connections()
    check = due_refreshes(connections, context.scheduled_execution_time, "scan_schedule")
    for alias, problem in check.invalid.items():
        context.log.error(f"connection {alias!r} is not scheduled for scans: {problem}")
    if not check.due:
        return dg.SkipReason(check.skip_reason())
    return [
        dg.RunRequest(
            run_key=due.run_key,
            run_config=dg.RunConfig(
                ops={
                    "start_scan": ScanConfig(db_connection_id=due.connection_id, changed_only=True)
                }
            ),
            tags={CONNECTION_TAG: due.connection_id, TRIGGER_TAG: "schedule"},
        )
        for due in check.due
    ]
