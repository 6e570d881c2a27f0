"""The refresh job: load the connection -> list live tables -> diff -> write statuses."""

from dataclasses import dataclass

import dagster as dg

from tdsync.bulk import gc_paused
from tdsync.defs.assets import report_refresh
from tdsync.defs.leases import (
    hold_connection_lease,
    release_connection_lease,
)
from tdsync.defs.resources import CatalogueResource, SourceDatabasesResource, failures_as_dagster
from tdsync.models import utcnow
from tdsync.refresh import Listing, RefreshPlan, plan_refresh
from tdsync.store import CatalogueStore

CONNECTION_TAG = "tdsync/db_connection_id"
TRIGGER_TAG = "tdsync/trigger"


class ConnectionConfig(dg.Config):
    db_connection_id: str


@dataclass(frozen=True)
class ConnectionRef:
    """What ops pass around: never the URI (outputs are stored; URIs hold passwords)."""

    id: str
    alias: str
    dialect: str
    schemas: list[str] | None


@dg.op
def load_connection(
    context: dg.OpExecutionContext, config: ConnectionConfig, catalogue: CatalogueResource
) -> ConnectionRef:
    conn = take_connection(context, catalogue.get_store(), config.db_connection_id)
    context.log.info(
        f"connection {conn.alias} ({conn.dialect}), schemas: {conn.schemas or 'default'}"
    )
    return conn


@dg.op
def list_live_tables(
    context: dg.OpExecutionContext,
    connection: ConnectionRef,
    catalogue: CatalogueResource,
    sources: SourceDatabasesResource,
) -> Listing:
    with failures_as_dagster(), gc_paused():
        uri = catalogue.get_store().connection_uri(connection.id)
        listing = sources.list_live(connection_uri=uri, schemas=connection.schemas)
    counts = {schema: len(tables or []) for schema, tables in listing.schemas.items()}
    context.log.info(f"live tables and views per schema: {counts}")
    return listing


@dg.op
def diff_against_catalogue(
    context: dg.OpExecutionContext,
    connection: ConnectionRef,
    listing: Listing,
    catalogue: CatalogueResource,
) -> RefreshPlan:
    with failures_as_dagster(), gc_paused():
        stored = catalogue.get_store().stored_tables(connection.id)
        plan = plan_refresh(stored, listing, utcnow())
    context.log.info(f"plan: {plan.summary()}")
    return plan


@dg.op
def write_statuses(
    context: dg.OpExecutionContext,
    connection: ConnectionRef,
    plan: RefreshPlan,
    catalogue: CatalogueResource,
) -> dict[str, int]:
    now = utcnow()
    with failures_as_dagster():
        store = catalogue.get_store()
        written = store.apply_refresh(connection.id, plan, now)
        store.mark_refreshed(connection.id, now)
    summary = {**plan.summary(), "documents_written": written}
    changes = {
        **summary,
        "connection": connection.alias,
        "added_tables": _names((t.schema_name, t.table_name) for t in plan.inserts),
        "deprecated_tables": _names(r.key for r in plan.deprecations),
        "restored_tables": _names(r.stored.key for r in plan.restores),
    }
    context.add_output_metadata(changes)
    with failures_as_dagster():
        report_refresh(context, connection.id, changes, plan.statuses_after)
    context.log.info(f"refresh of {connection.alias}: {summary}")
    return summary


@dg.job(tags={TRIGGER_TAG: "ui"})
def refresh_table_descriptions() -> None:
    connection = load_connection()
    listing = list_live_tables(connection)
    plan = diff_against_catalogue(connection, listing)
    write_statuses.with_hooks({release_connection_lease})(connection, plan)


def _names(keys) -> dg.MetadataValue:
    names = [".".join(key) for key in keys]
    shown = names[:50] + ([f"… and {len(names) - 50} more"] if len(names) > 50 else [])
    return dg.MetadataValue.json(shown)


def take_connection(
    context: dg.OpExecutionContext, store: CatalogueStore, id_or_alias: str
) -> ConnectionRef:
    """The first step of both jobs: load the run's connection, tag the run with it and take the
    connection's lease (waiting, bounded, for another run of it)."""
    with failures_as_dagster():
        conn = store.get_connection(id_or_alias)
    _tag_run(context, conn.id)
    hold_connection_lease(context, store, conn.id)
    return ConnectionRef(conn.id, conn.alias, conn.dialect, conn.schemas)


def _tag_run(context: dg.OpExecutionContext, connection_id: str) -> None:
    # Runs launched from the UI only carry the connection in their config; tag them so that
    # run lists filter and per-connection concurrency see them like every other trigger's.
    if context.run.tags.get(CONNECTION_TAG) != connection_id:
        context.instance.add_run_tags(context.run_id, {CONNECTION_TAG: connection_id})
