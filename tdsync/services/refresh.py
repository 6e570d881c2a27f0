"""Services layer: a refresh's steps, in the order the refresh job's ops call them.

List the connection's live tables (one read of its URI and SSH settings), diff them against the
catalogue (proven unchanged from the connection's catalogue version, one small document in
tdsync.store.versions, else planned from one read of its rows), then write the plan. The ops
(tdsync.defs.refresh_job) add Dagster's logging, metadata and failures around these.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from tdsync.config.settings import Settings
from tdsync.domain.refresh_rules import (
    Listing,
    RefreshPlan,
    listing_digest,
    plan_from_snapshot,
    plan_refresh,
    plan_renames,
    with_snapshot,
)
from tdsync.services.connections import ConnectionRef
from tdsync.sources.fingerprints import fingerprint_tables
from tdsync.sources.listing import list_live_tables
from tdsync.store import CatalogueStore

# (schema, table) names of new tables -> their structural fingerprints (tdsync.sources.fingerprints).
Fingerprinter = Callable[[list[tuple[str, str]]], dict[tuple[str, str], str]]


def list_live(store: CatalogueStore, connection: ConnectionRef, *, settings: Settings) -> Listing:
    """The connection's live tables and views, per schema (`settings`: the sources' timeouts)."""
    uri, ssh = store.source_access(connection.id)
    return list_live_tables(
        uri, connection.schemas, timeout_s=settings.source_timeout_s, ssh=ssh, settings=settings
    )


def plan_against_source_and_catalogue(
    store: CatalogueStore,
    connection_id: str,
    listing: Listing,
    now: datetime,
    *,
    settings: Settings,
    allow_empty_schemas: Collection[str] = (),
) -> RefreshPlan:
    """The refresh's plan; new tables are fingerprinted from the source's catalog (one query per
    schema that has some, after one read of the connection), so they are stored with their
    fingerprint and a vanished table among them is found renamed."""

    def fingerprint(tables: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        uri, ssh = store.source_access(connection_id)
        return fingerprint_tables(
            uri, tables, timeout_s=settings.source_timeout_s, ssh=ssh, settings=settings
        )

    return plan_against_catalogue(
        store,
        connection_id,
        listing,
        now,
        fingerprint=fingerprint,
        allow_empty_schemas=allow_empty_schemas,
    )


def plan_against_catalogue(
    store: CatalogueStore,
    connection_id: str,
    listing: Listing,
    now: datetime,
    *,
    fingerprint: Fingerprinter,
    allow_empty_schemas: Collection[str] = (),
) -> RefreshPlan:
    """The refresh's plan; `fingerprint` is asked only when there are new tables (for renames).

    The version is read (and bumped) before the rows, so a write that lands between the two makes
    the snapshot this plan carries stale, and apply_refresh does not record it."""
    version, known = store.catalogue_version(connection_id)
    digest = listing_digest(listing)
    plan = plan_from_snapshot(known, version, digest, now)
    if plan is not None:
        return plan
    stored = store.stored_tables(connection_id)
    plan = plan_refresh(stored, listing, now, allow_empty_schemas=allow_empty_schemas)
    if plan.inserts:
        plan = plan_renames(
            plan, fingerprint([(t.schema_name, t.table_name) for t in plan.inserts])
        )
    return with_snapshot(plan, stored, version, digest)


def write_plan(store: CatalogueStore, connection_id: str, plan: RefreshPlan, now: datetime) -> int:
    """Apply the plan, then record the refresh's end on the connection (ConnectionNotFound if it
    was deleted meanwhile: its rows are swept again); returns the documents written."""
    written = store.apply_refresh(connection_id, plan, now)
    store.mark_refreshed(connection_id, now)
    return written
