"""A refresh's diff against the catalogue: proven unchanged from the connection's catalogue
version (one small document, tdsync.store.versions), else planned from one read of its rows."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from tdsync.domain.refresh_rules import (
    Listing,
    RefreshPlan,
    listing_digest,
    plan_from_snapshot,
    plan_refresh,
    plan_renames,
    with_snapshot,
)
from tdsync.store import CatalogueStore

# (schema, table) names of new tables -> their structural fingerprints (tdsync.sources.fingerprints).
Fingerprinter = Callable[[list[tuple[str, str]]], dict[tuple[str, str], str]]


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
