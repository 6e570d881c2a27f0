"""The scan job: claim the requested descriptions (SYNCHRONIZING) -> scan and settle each one.

Run config: the connection id and, optionally, table names or description ids; with neither, every
description of the connection that is not DEPRECATED is scanned. Rows are saved in batches as
tables finish, so a run killed half-way keeps what it did; what it leaves SYNCHRONIZING turns FAILED
when its lease runs out (the next refresh or scan) or at once through the run-failure sensor.
"""

from dataclasses import dataclass
from datetime import datetime

import dagster as dg
from pydantic import Field

from tdsync.defs.bulk import gc_paused
from tdsync.defs.connection_lease import release_connection_lease
from tdsync.defs.refresh_job import TRIGGER_TAG, ConnectionRef, take_connection
from tdsync.defs.resources import SourceDatabasesResource, StoreResource, failures_as_dagster
from tdsync.domain.errors import TdsyncError
from tdsync.domain.models import utcnow
from tdsync.domain.scan_model import (
    Concurrency,
    DataMaxAge,
    ExampleRows,
    MaxCategories,
    SampleRows,
    ScanOptions,
    ScanTarget,
)
from tdsync.domain.scan_rules import changed
from tdsync.services import connection_lease
from tdsync.services.scan_recorder import ScanRecorder
from tdsync.store import CatalogueStore, lease_expiry


class ScanConfig(dg.Config):
    db_connection_id: str = Field(
        description=(
            "The connection to scan: its alias (the table_descriptions partition's name; "
            "`tdsync connections list`) or its id (`id` in GET /api/v1/database-connections)."
        )
    )
    table_names: list[str] | None = Field(
        default=None,
        description="Only these tables (`table` or `schema.table`); unset: every table not DEPRECATED.",
    )
    description_ids: list[str] | None = Field(
        default=None, description="Only these table descriptions, by id."
    )
    # Bounded (tdsync.domain.scan_model): a run asked for more fails at its first step, claiming nothing.
    max_categories: MaxCategories = 100
    example_rows: ExampleRows = 3
    sample_rows: SampleRows = 10_000
    concurrency: Concurrency = 4
    # Re-read only tables never scanned, FAILED, changed in structure, or whose data is older
    # than data_max_age_s (tdsync.domain.scan_rules; None: the connection's); the others stay as
    # they are.
    changed_only: bool = False
    data_max_age_s: DataMaxAge | None = None


@dataclass(frozen=True)
class ScanBatch:
    connection: ConnectionRef
    targets: list[ScanTarget]
    options: ScanOptions
    expired_leases: int = 0


@dg.op
def start_scan(
    context: dg.OpExecutionContext,
    config: ScanConfig,
    catalogue: StoreResource,
    sources: SourceDatabasesResource,
) -> ScanBatch:
    """Load the connection, fail rows of dead scans, mark the requested rows SYNCHRONIZING."""
    settings = catalogue.settings()
    # A changed-only scan reads every row's fingerprint (10,000 short-lived documents and
    # targets): as in scan_tables, the collector's passes over Dagster's heap would cost more.
    with failures_as_dagster(), gc_paused():
        store = catalogue.get_store()
        conn = take_connection(context, catalogue, config.db_connection_id)
        now = utcnow()
        expired = store.expire_scan_leases(conn.id, now)
        ids = None  # all of the connection's
        if config.description_ids is not None or config.table_names or config.changed_only:
            named = store.scan_targets(
                connection_id=conn.id, ids=config.description_ids, table_names=config.table_names
            )
            ids = [t.id for t in named]
        if config.changed_only:
            ids = _changed(store, conn, named, sources, config, now)
            context.log.info(f"{len(named) - len(ids)} unchanged table(s) left as they are")
        targets = store.claim_for_scan(
            conn.id,
            ids,
            run_id=context.run_id,
            lease_expires_at=lease_expiry(now, settings.scan_lease_s),
        )
    if expired:
        context.log.warning(f"{expired} description(s) of an earlier, dead scan marked FAILED")
    context.log.info(f"scanning {len(targets)} table(s) of {conn.alias} ({conn.dialect})")
    options = ScanOptions(
        max_categories=config.max_categories,
        example_rows=config.example_rows,
        sample_rows=config.sample_rows,
        concurrency=config.concurrency,
    )
    return ScanBatch(conn, targets, options, expired)


@dg.op
def scan_tables(
    context: dg.OpExecutionContext,
    batch: ScanBatch,
    catalogue: StoreResource,
    sources: SourceDatabasesResource,
) -> dict:
    """Scan every claimed table (bounded parallelism) and settle each SCANNED or FAILED."""
    store = catalogue.get_store()
    recorder = ScanRecorder(
        store,
        batch.connection.id,
        context.run_id,
        len(batch.targets),
        lease_s=catalogue.settings().scan_lease_s,
        log=context.log.info,
        warn=context.log.warning,
    )
    try:
        # Tens of thousands of reflected columns, models and documents, all short-lived: without
        # the pause the collector's full passes over Dagster's heap took 4-5 s of a 10,000-table
        # metadata scan. It runs as usual once the scan is over.
        with recorder, gc_paused():
            for result in sources.scan(
                connection_uri=store.connection_uri(batch.connection.id),
                targets=batch.targets,
                options=batch.options,
                ssh=store.ssh_settings(batch.connection.id),
            ):
                recorder.add(result)
            recorder.save()
    except TdsyncError as exc:  # the source cannot be reached at all, or the store is down
        reason = exc.detail.get("reason") if isinstance(exc.detail, dict) else None
        _fail_the_rest(context, store, batch, recorder, f"scan failed: {exc.message}", reason)
        with failures_as_dagster():
            raise
    except BaseException as exc:
        _fail_the_rest(context, store, batch, recorder, "scan stopped", type(exc).__name__)
        raise
    for row in recorder.drift_rows():
        context.log.info(
            f"schema drift in {row['table']}: added {row['added']}, removed {row['removed']}, "
            f"type changed {row['type_changed']}"
        )
    summary = {**recorder.summary(), "expired_leases": batch.expired_leases}
    context.add_output_metadata(
        {
            **summary,
            "connection": batch.connection.alias,
            "degraded": recorder.degraded,
            "drifted_tables": dg.MetadataValue.json(recorder.drift_rows()),
            "failed_tables": dg.MetadataValue.json(recorder.failures),
        }
    )
    context.log.info(f"scan of {batch.connection.alias}: {summary}")
    return summary


@dg.job(tags={TRIGGER_TAG: "ui"})
def scan_table_descriptions() -> None:
    scan_tables.with_hooks({release_connection_lease})(start_scan())


def _changed(
    store: CatalogueStore,
    conn: ConnectionRef,
    named: list[ScanTarget],
    sources: SourceDatabasesResource,
    config: ScanConfig,
    now: datetime,
) -> list[str]:
    """The ids of the named tables a changed-only scan re-reads (one catalog query per schema)."""
    live = sources.fingerprint(
        connection_uri=store.connection_uri(conn.id),
        tables=[(t.schema_name, t.table_name) for t in named],
        ssh=store.ssh_settings(conn.id),
    )
    max_age_s = config.data_max_age_s
    if max_age_s is None:
        max_age_s = store.get_connection(conn.id).data_max_age_s
    return [t.id for t in changed(named, live, now, max_age_s)]


def _fail_the_rest(
    context: dg.OpExecutionContext,
    store: CatalogueStore,
    batch: ScanBatch,
    recorder: ScanRecorder,
    message: str,
    reason: str | None,
) -> None:
    """Keep what was scanned; every row the run still holds becomes FAILED with its error, and
    the connection is free for its next run at once.

    Best effort: with the store down, the rows' lease settles them later, and the run fails
    with its own error rather than this one's.
    """
    message = f"{message}: {reason}" if reason else message
    try:
        recorder.save()
        failed = store.fail_synchronizing(
            batch.connection.id, error_message=message, scan_run_id=context.run_id
        )
        context.log.error(f"{message}; {failed} unscanned description(s) marked FAILED")
        connection_lease.release(store, context.run_id, succeeded=False)
    except TdsyncError as exc:
        context.log.error(f"{message}; its rows could not be settled now: {exc.message}")
