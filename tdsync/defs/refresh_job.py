"""Shell (Dagster): the refresh, the `table_descriptions` asset, one partition per connection, computed by four ops
(load the connection -> list live tables -> diff -> write statuses); its job is the refresh job.

Materializing a connection's partition (from the UI, a schedule, the API or the CLI) refreshes that
connection; the catalogue's checks run in the same run, after it. Each op is one step of
tdsync.services.refresh, with Dagster's logging, metadata and failures around it.
"""

from datetime import datetime

import dagster as dg
import pydantic

from tdsync.defs.assets import TABLE_DESCRIPTIONS, status_metadata
from tdsync.defs.bulk import gc_paused
from tdsync.defs.connection_lease import release_connection_lease, take_connection
from tdsync.defs.partitions import CONNECTIONS, connection_for_partition
from tdsync.defs.resources import SourceDatabasesResource, StoreResource, failures_as_dagster
from tdsync.defs.tags import TRIGGER_TAG
from tdsync.domain.cron import cron_problem, moment, next_fire_after
from tdsync.domain.models import utcnow
from tdsync.domain.refresh_rules import Listing, RefreshPlan
from tdsync.services import refresh
from tdsync.services.connections import ConnectionRef

# What a refresh's summary holds (its materialization's metadata, read back by the API and CLI).
SUMMARY_FIELDS = (
    "added",
    "deprecated",
    "restored",
    "renamed",
    "renamed_tables",
    "retyped",
    "expired_leases",
    "unchanged",
    "documents_written",
)


@dg.op
def load_connection(context: dg.OpExecutionContext, catalogue: StoreResource) -> ConnectionRef:
    """The connection of the run's partition (its alias), no config to type."""
    with failures_as_dagster():
        found = connection_for_partition(catalogue.get_store(), context.partition_key)
    conn = take_connection(context, catalogue, found)
    context.log.info(
        f"connection {conn.alias} ({conn.dialect}), schemas: {conn.schemas or 'default'}"
    )
    return conn


@dg.op
def list_live_tables(
    context: dg.OpExecutionContext,
    connection: ConnectionRef,
    catalogue: StoreResource,
    sources: SourceDatabasesResource,
) -> Listing:
    with failures_as_dagster(), gc_paused():
        listing = refresh.list_live(catalogue.get_store(), connection, settings=sources.settings())
    counts = {schema: len(tables or []) for schema, tables in listing.schemas.items()}
    context.log.info(f"live tables and views per schema: {counts}")
    return listing


class RefreshConfig(dg.Config):
    """Optional: nothing to type for an ordinary refresh."""

    allow_empty_schemas: list[str] = pydantic.Field(
        default=[],
        description=(
            "Schemas you confirm are empty now: their tables are deprecated by this run. "
            "Without it a schema that lists empty fails the run with empty_database."
        ),
    )


@dg.op
def diff_against_catalogue(
    context: dg.OpExecutionContext,
    config: RefreshConfig,
    connection: ConnectionRef,
    listing: Listing,
    catalogue: StoreResource,
    sources: SourceDatabasesResource,
) -> RefreshPlan:
    """The plan; new tables are fingerprinted (one catalog query per schema that has some), so
    they are stored with their fingerprint and a vanished table among them is found renamed.
    A catalogue unchanged since the last refresh (same version, same listing) is not read at all
    (tdsync.store.versions)."""
    with failures_as_dagster(), gc_paused():
        plan = refresh.plan_against_source_and_catalogue(
            catalogue.get_store(),
            connection.id,
            listing,
            utcnow(),
            settings=sources.settings(),
            allow_empty_schemas=config.allow_empty_schemas,
        )
    context.log.info(f"plan: {plan.summary()}")
    return plan


@dg.op
def write_statuses(
    context: dg.OpExecutionContext,
    connection: ConnectionRef,
    plan: RefreshPlan,
    catalogue: StoreResource,
) -> None:
    """Apply the plan; the materialization's metadata is the refresh's summary (counts by status
    after it, what it added, deprecated and restored), which the API and CLI read back."""
    now = utcnow()
    with failures_as_dagster(), gc_paused():  # 100,000 inserts: 2 s in the collector
        written = refresh.write_plan(catalogue.get_store(), connection.id, plan, now)
    summary = {**plan.summary(), "documents_written": written}
    changes = {
        **summary,
        "connection": connection.alias,
        "added_tables": _names((t.schema_name, t.table_name) for t in plan.inserts),
        "deprecated_tables": _names(r.key for r in plan.deprecations),
        "restored_tables": _names(r.stored.key for r in plan.restores),
        "renamed_tables": _names(
            (r.stored.schema_name, f"{r.stored.table_name} -> {r.table_name}") for r in plan.renames
        ),
        "tables_found": _found(plan),
    }
    # The plan's own counts, not counted in the store again: on SecantusDB each count reads
    # every matching document (0.3 s for 10,000).
    context.add_output_metadata(
        {**status_metadata(plan.statuses_after), **changes, **schedule_metadata(connection, now)}
    )
    context.log.info(f"refresh of {connection.alias}: {summary}")


@dg.graph_asset(
    key=TABLE_DESCRIPTIONS,
    description=(
        "The catalogue of table descriptions in MongoDB, one partition per connection (its alias). "
        "Materializing a partition refreshes that connection: new tables NOT_SCANNED, vanished "
        "ones DEPRECATED, returning ones restored, renamed ones keep their descriptions; the metadata counts every status."
    ),
    partitions_def=CONNECTIONS,
    group_name="catalogue",
    kinds={"mongodb"},
)
def table_descriptions() -> None:
    connection = load_connection()
    listing = list_live_tables(connection)
    plan = diff_against_catalogue(connection, listing)
    return write_statuses.with_hooks({release_connection_lease})(connection, plan)


# The asset's job: selecting the asset selects its checks too, so each refresh evaluates them.
refresh_table_descriptions = dg.define_asset_job(
    "refresh_table_descriptions",
    selection=dg.AssetSelection.assets(TABLE_DESCRIPTIONS),
    tags={TRIGGER_TAG: "ui"},
    description="Refreshes one connection: materializes its table_descriptions partition.",
)


def schedule_metadata(connection: ConnectionRef, now: datetime) -> dict[str, str]:
    """When the partition was refreshed and when its schedule refreshes it next: where a person
    looks at a connection in Dagster (the partition's latest materialization)."""
    cron = connection.refresh_schedule
    scheduled = cron is not None and cron_problem(cron) is None
    return {
        "refreshed_at": moment(now),
        "refresh_schedule": f"{cron} (UTC)" if cron else "none",
        "next_scheduled_refresh": moment(next_fire_after(cron, now)) if scheduled else "none",
    }


def refresh_run_config(allow_empty_schemas: list[str] | None) -> dict:
    """The refresh job's run config: empty unless schemas are confirmed empty."""
    if not allow_empty_schemas:
        return {}
    config = {"allow_empty_schemas": list(allow_empty_schemas)}
    return {"ops": {"table_descriptions": {"ops": {"diff_against_catalogue": {"config": config}}}}}


# Past this, tables_found is left empty and an auto-scan is a changed-only scan of the connection
# (which picks the same NOT_SCANNED rows), rather than a materialization event of megabytes.
TABLES_FOUND_MAX = 1_000


def _found(plan: RefreshPlan) -> dg.MetadataValue:
    """The tables an auto-scan scans (sensors.scan_what_refreshes_found): added, restored and
    renamed ones, as `schema.table` (their names now)."""
    found = [
        *((t.schema_name, t.table_name) for t in plan.inserts),
        *(r.stored.key for r in plan.restores),
        *((r.stored.schema_name, r.table_name) for r in plan.renames),
    ]
    if len(found) > TABLES_FOUND_MAX:
        return dg.MetadataValue.json(None)
    return dg.MetadataValue.json([".".join(key) for key in found])


def _names(keys) -> dg.MetadataValue:
    names = [".".join(key) for key in keys]
    shown = names[:50] + ([f"… and {len(names) - 50} more"] if len(names) > 50 else [])
    return dg.MetadataValue.json(shown)
