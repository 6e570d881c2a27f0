"""Shell (Dagster): Sensors: settle what a failed or cancelled run leaves behind; partitions follow connections;
the catalogue's checks are reported when their outcome changes; connections with `auto_scan` get
a scan of what their refreshes found.

A scan marks its rows SYNCHRONIZING; if its run fails or is cancelled before it writes them, they
would stay SYNCHRONIZING until their lease runs out. The run-status sensors turn them FAILED with
the run's error at once, and free the connection's lease the run held.
"""

import contextlib
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from tdsync.config.credentials import scrub
from tdsync.defs.assets import TABLE_DESCRIPTIONS, catalogue_checks
from tdsync.defs.partitions import CONNECTIONS, partition_key
from tdsync.defs.refresh_job import refresh_table_descriptions
from tdsync.defs.resources import StoreResource, failures_as_dagster
from tdsync.defs.scan_job import ScanConfig, scan_table_descriptions
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.domain.errors import TdsyncError
from tdsync.domain.models import DatabaseConnection, as_utc, utcnow
from tdsync.services import connection_lease
from tdsync.store import CatalogueStore

SCAN_JOB = scan_table_descriptions.name
REFRESH_JOB = refresh_table_descriptions.name
RELEASE_GRACE = timedelta(seconds=60)


def settle_ended_run(store: CatalogueStore, run: dg.DagsterRun, error: str) -> str:
    """Free the run's lease; for a scan, its SYNCHRONIZING rows become FAILED with `error`."""
    released = connection_lease.release(store, run.run_id, succeeded=False)
    connection_id = run.tags.get(CONNECTION_TAG)
    failed = 0
    if run.job_name == SCAN_JOB and connection_id:
        # A raw driver error may quote the URI: the message is stored and shown by the API.
        uris = []
        with contextlib.suppress(TdsyncError):  # e.g. the connection was deleted meanwhile
            uris.append(store.connection_uri(connection_id))
        failed = store.fail_synchronizing(
            connection_id, error_message=scrub(error, *uris), scan_run_id=run.run_id
        )
    return (
        f"run {run.run_id} ({run.job_name}, connection {connection_id or 'unknown'}): "
        f"{failed} SYNCHRONIZING description(s) marked FAILED, {released} lease(s) released"
    )


def run_error(context: dg.RunFailureSensorContext) -> str:
    """The first step error of a failed run, else the run's failure message."""
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return f"scan run failed: {data.user_failure_data.description}"
        if data.error is not None:
            error = data.error
            while error.cause is not None:  # past Dagster's "error while executing op" wrapper
                error = error.cause
            return f"scan run failed: {error.message.strip().splitlines()[0]}"
    message = context.failure_event.message or "the run failed"
    return f"scan run failed: {message}"


@dg.run_failure_sensor(
    name="settle_failed_runs",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="A failed scan's SYNCHRONIZING rows become FAILED; the run's lease is freed.",
)
def settle_failed_runs(context: dg.RunFailureSensorContext, catalogue: StoreResource) -> None:
    with failures_as_dagster():
        context.log.info(
            settle_ended_run(catalogue.get_store(), context.dagster_run, run_error(context))
        )


@dg.run_status_sensor(
    name="settle_cancelled_runs",
    run_status=dg.DagsterRunStatus.CANCELED,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="A cancelled scan's SYNCHRONIZING rows become FAILED; the run's lease is freed.",
)
def settle_cancelled_runs(context: dg.RunStatusSensorContext, catalogue: StoreResource) -> None:
    with failures_as_dagster():
        context.log.info(
            settle_ended_run(
                catalogue.get_store(),
                context.dagster_run,
                f"scan run {context.dagster_run.run_id} was cancelled before it finished",
            )
        )


@dg.sensor(
    name="sync_connection_partitions",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Keeps the table_descriptions partitions equal to the registered connections' aliases "
        "(added, renamed, deleted)."
    ),
)
def sync_connection_partitions(
    context: dg.SensorEvaluationContext, catalogue: StoreResource
) -> dg.SensorResult | dg.SkipReason:
    with failures_as_dagster():
        keys = sorted(partition_key(conn) for conn in catalogue.get_store().list_connections())
    digest = hashlib.sha1("\0".join(keys).encode()).hexdigest()
    if context.cursor == digest:
        return dg.SkipReason(f"partitions already match the {len(keys)} connection(s)")
    existing = set(context.instance.get_dynamic_partitions(CONNECTIONS.name))
    wanted = set(keys)
    requests = []
    if wanted - existing:
        requests.append(CONNECTIONS.build_add_request(sorted(wanted - existing)))
    if existing - wanted:
        requests.append(CONNECTIONS.build_delete_request(sorted(existing - wanted)))
    if not requests:
        return dg.SensorResult(
            cursor=digest, skip_reason=f"partitions already match the {len(keys)} connection(s)"
        )
    return dg.SensorResult(dynamic_partitions_requests=requests, cursor=digest)


@dg.sensor(
    name="check_table_descriptions",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Reports the table_descriptions checks (no FAILED rows, no scan past its lease) "
        "whenever their outcome changes."
    ),
)
def check_table_descriptions(
    context: dg.SensorEvaluationContext, catalogue: StoreResource
) -> dg.SensorResult | dg.SkipReason:
    with failures_as_dagster():
        outcomes = catalogue_checks(catalogue.get_store(), utcnow())
    state = json.dumps([[o.name, o.passed, o.description] for o in outcomes])
    digest = hashlib.sha1(state.encode()).hexdigest()
    verdict = "; ".join(o.description for o in outcomes)
    if context.cursor == digest:
        return dg.SkipReason(f"unchanged since last reported: {verdict}")
    return dg.SensorResult(asset_events=[o.to_evaluation() for o in outcomes], cursor=digest)


def orphan_reason(
    lease: dict[str, Any] | None, run_id: str, started_at: datetime, now: datetime, wait_s: float
) -> str | None:
    """Why a STARTED run must be dead, judged from its connection's lease; None if it may be alive.

    A live run holds the lease and renews it; only a run still waiting for the lease (at most
    `wait_s`) holds nothing. A run executing inside an API or CLI process that was killed has no
    run worker for Dagster's run monitoring to watch: without this it would stay STARTED for good,
    and the queue's one-run-per-connection limit would hold every later run of its connection.
    """
    lease = lease or {}
    expires = as_utc(lease.get("expires_at"))
    if lease.get("holder") == run_id:
        if expires is not None and expires > now:
            return None
        return f"its process stopped renewing the connection lease, which expired at {expires}"
    last = lease.get("last") or {}
    released = as_utc(last.get("released_at"))
    if last.get("holder") == run_id and released is not None:
        if now - released > RELEASE_GRACE:
            return f"it released the connection lease at {released} but never finished"
        return None
    if now - started_at > timedelta(seconds=wait_s) + timedelta(
        seconds=connection_lease.LEASE_TTL_S
    ):
        return "it never took the connection lease and has outlived the longest wait for it"
    return None


@dg.sensor(
    name="settle_orphaned_runs",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Marks FAILED the refresh and scan runs left STARTED by a process that died (e.g. a "
        "killed API), so they free their connection in the run queue and their rows settle."
    ),
)
def settle_orphaned_runs(
    context: dg.SensorEvaluationContext, catalogue: StoreResource
) -> dg.SkipReason:
    now = utcnow()
    wait_s = catalogue.settings().lease_wait_s
    started = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED], job_name=None),
        limit=500,
    )
    settled = []
    with failures_as_dagster():
        store = catalogue.get_store()
        for record in started:
            run = record.dagster_run
            connection_id = run.tags.get(CONNECTION_TAG)
            if run.job_name not in (REFRESH_JOB, SCAN_JOB) or not connection_id:
                continue
            started_at = datetime.fromtimestamp(
                record.start_time or record.create_timestamp.timestamp(), UTC
            )
            reason = orphan_reason(
                store.connection_lease(connection_id), run.run_id, started_at, now, wait_s
            )
            if reason is None:
                continue
            message = f"run {run.run_id} is marked failed: {reason}"
            context.instance.report_run_failed(run, message)
            context.log.warning(message)
            settled.append(run.run_id)
    if settled:
        return dg.SkipReason(f"marked {len(settled)} orphaned run(s) failed: {', '.join(settled)}")
    return dg.SkipReason(f"{len(started)} started run(s), none orphaned")


def tables_to_scan(
    refreshes: list[tuple[str | None, dict[str, Any]]], connections: dict[str, DatabaseConnection]
) -> dict[str, list[str] | None]:
    """{connection id: the `schema.table` names to scan, or None for a changed-only scan of the
    whole connection} from refreshes' (partition key, materialization metadata), oldest first,
    for the connections with auto_scan. A refresh whose list was too long to record
    (tables_found null) makes its connection's scan a changed-only one."""
    wanted: dict[str, list[str] | None] = {}
    for key, metadata in refreshes:
        conn = connections.get(key or "")
        found = metadata.get("tables_found")
        found = found.value if found is not None else []
        if conn is None or not conn.auto_scan or found == []:
            continue
        names = wanted.get(conn.id, [])
        wanted[conn.id] = None if found is None or names is None else [*names, *found]
    return {cid: list(dict.fromkeys(names)) if names else names for cid, names in wanted.items()}


@dg.sensor(
    name="scan_what_refreshes_found",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=scan_table_descriptions,
    description=(
        "After a refresh of a connection with auto_scan finds new, restored or renamed tables, "
        "requests a scan of just those tables (one run per connection); the refresh never waits."
    ),
)
def scan_what_refreshes_found(
    context: dg.SensorEvaluationContext, catalogue: StoreResource
) -> dg.SensorResult | dg.SkipReason:
    # The cursor is the event log's: each materialization is looked at once, in order.
    found = context.instance.fetch_materializations(
        TABLE_DESCRIPTIONS, limit=500, cursor=context.cursor, ascending=True
    )
    if not found.records:
        return dg.SkipReason("no refresh since the last evaluation")
    with failures_as_dagster():
        connections = {partition_key(c): c for c in catalogue.get_store().list_connections()}
    wanted = tables_to_scan(
        [(r.partition_key, r.asset_materialization.metadata) for r in found.records],
        connections,
    )
    last = found.records[-1].storage_id
    requests = [
        dg.RunRequest(
            # The same refreshes never ask twice, even if the cursor is lost.
            run_key=f"{connection_id}@{last}",
            run_config=dg.RunConfig(
                ops={
                    "start_scan": ScanConfig(
                        db_connection_id=connection_id,
                        table_names=names,
                        changed_only=names is None,
                    )
                }
            ),
            tags={CONNECTION_TAG: connection_id, TRIGGER_TAG: "sensor"},
        )
        for connection_id, names in wanted.items()
    ]
    if not requests:
        return dg.SensorResult(
            cursor=found.cursor,
            skip_reason=(
                f"{len(found.records)} refresh(es) found no new, restored or renamed table "
                "of a connection with auto_scan"
            ),
        )
    return dg.SensorResult(run_requests=requests, cursor=found.cursor)
