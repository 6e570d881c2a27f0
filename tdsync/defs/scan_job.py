"""Shell (Dagster): the scan job, claim the requested descriptions (SYNCHRONIZING) -> scan and settle each one.

Run config: the connection id and, optionally, table names or description ids; with neither, every
description of the connection that is not DEPRECATED is scanned. Rows are saved in batches as
tables finish, so a run killed half-way keeps what it did; what it leaves SYNCHRONIZING turns FAILED
when its lease runs out (the next refresh or scan) or at once through the run-failure sensor.
Each op is one step of tdsync.services.scan, with Dagster's logging, metadata and failures around it.
"""

from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from tdsync.defs.bulk import gc_paused
from tdsync.defs.connection_lease import release_connection_lease, take_connection
from tdsync.defs.resources import SourceDatabasesResource, StoreResource, failures_as_dagster
from tdsync.defs.tags import TRIGGER_TAG
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
from tdsync.services import scan
from tdsync.services.connections import ConnectionRef


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
    # A changed-only scan reads every row's fingerprint (10,000 short-lived documents and
    # targets): as in scan_tables, the collector's passes over Dagster's heap would cost more.
    with failures_as_dagster(), gc_paused():
        store = catalogue.get_store()
        conn = take_connection(context, catalogue, store.get_connection(config.db_connection_id))
        claimed = scan.claim(
            store,
            conn,
            run_id=context.run_id,
            description_ids=config.description_ids,
            table_names=config.table_names,
            changed_only=config.changed_only,
            data_max_age_s=config.data_max_age_s,
            lease_s=catalogue.settings().scan_lease_s,
            settings=sources.settings(),
            now=utcnow(),
        )
    if claimed.unchanged is not None:
        context.log.info(f"{claimed.unchanged} unchanged table(s) left as they are")
    if claimed.expired_leases:
        context.log.warning(
            f"{claimed.expired_leases} description(s) of an earlier, dead scan marked FAILED"
        )
    targets = claimed.targets
    context.log.info(f"scanning {len(targets)} table(s) of {conn.alias} ({conn.dialect})")
    options = ScanOptions(
        max_categories=config.max_categories,
        example_rows=config.example_rows,
        sample_rows=config.sample_rows,
        concurrency=config.concurrency,
    )
    return ScanBatch(conn, targets, options, claimed.expired_leases)


@dg.op
def scan_tables(
    context: dg.OpExecutionContext,
    batch: ScanBatch,
    catalogue: StoreResource,
    sources: SourceDatabasesResource,
) -> dict:
    """Scan every claimed table (bounded parallelism) and settle each SCANNED or FAILED."""
    # Tens of thousands of reflected columns, models and documents, all short-lived: without
    # the pause the collector's full passes over Dagster's heap took 4-5 s of a 10,000-table
    # metadata scan. It runs as usual once the scan is over.
    with failures_as_dagster(), gc_paused():
        recorder = scan.scan_claimed(
            catalogue.get_store(),
            batch.connection.id,
            context.run_id,
            batch.targets,
            batch.options,
            lease_s=catalogue.settings().scan_lease_s,
            settings=sources.settings(),
            log=context.log.info,
            warn=context.log.warning,
            error=context.log.error,
        )
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
