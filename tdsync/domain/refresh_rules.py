"""Domain layer: The refresh rules of SPEC.md as one pure function: stored descriptions + live listing -> plan.

No I/O here. The store applies a plan with conditional writes, so a plan computed from a
slightly stale read can never undo what a concurrent refresh or scan wrote.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime

from tdsync.domain.errors import EmptyDatabase, InvalidDatabaseConnection
from tdsync.domain.models import Status, TableType

LEASE_EXPIRED_MESSAGE = (
    "scan did not finish before its lease expired at {expiry} (the scan run died or was cancelled)"
)


@dataclass(frozen=True)
class LiveTable:
    schema_name: str
    table_name: str
    table_type: TableType


@dataclass(frozen=True)
class StoredTable:
    id: str
    schema_name: str
    table_name: str
    table_type: TableType
    status: Status
    lease_expires_at: datetime | None = None
    fingerprint: str | None = None  # of its structure, as its insert or last scan saw it

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema_name, self.table_name)


@dataclass(frozen=True)
class Listing:
    """What a source database holds now, per listed schema; None for a schema that does not exist."""

    schemas: dict[str, list[LiveTable] | None]

    def __reduce__(self):
        # Dagster's IO manager pickles op outputs. 100,000 LiveTables took 0.25 s to dump and
        # 0.4 s to load; two lists of strings per schema (names, kinds) take 0.01 s and 0.15 s.
        packed = {
            schema: None
            if tables is None
            else ([t.table_name for t in tables], [t.table_type.value for t in tables])
            for schema, tables in self.schemas.items()
        }
        return (_unpacked_listing, (packed,))


def _unpacked_listing(packed: dict[str, tuple[list[str], list[str]] | None]) -> Listing:
    kinds = {kind.value: kind for kind in TableType}
    return Listing(
        {
            schema: None
            if lists is None
            else [
                LiveTable(schema, name, kinds[kind])
                for name, kind in zip(lists[0], lists[1], strict=True)
            ]
            for schema, lists in packed.items()
        }
    )


@dataclass(frozen=True)
class Restore:
    stored: StoredTable
    table_type: TableType


@dataclass(frozen=True)
class Rename:
    stored: StoredTable
    table_name: str  # its new name, in the same schema
    fingerprint: str
    # The new table's kind (a plan must leave nothing for the next one to change: idempotent).
    table_type: TableType | None = None


@dataclass(frozen=True)
class CatalogueSnapshot:
    """What a refresh knows of a connection's catalogue once its plan is written (issue 18).

    Valid while the catalogue's version is still `version`: every write that changes a
    description's key, status or kind bumps the version (tdsync.store.versions), so a refresh that
    finds the same version and the same listing knows its plan is empty without reading a row.
    """

    version: str  # the catalogue version the refresh's read gave (tdsync.store.versions)
    listing: str  # listing_digest of the live listing it was computed from
    statuses: dict[str, int]  # descriptions per status
    lease_expires_first: datetime | None  # earliest scan lease of a SYNCHRONIZING row


@dataclass(frozen=True)
class RefreshPlan:
    inserts: list[LiveTable] = field(default_factory=list)
    deprecations: list[StoredTable] = field(default_factory=list)
    restores: list[Restore] = field(default_factory=list)
    retypes: list[Restore] = field(default_factory=list)
    expired_leases: list[StoredTable] = field(default_factory=list)
    renames: list[Rename] = field(default_factory=list)
    # (schema, table) -> structural fingerprint of the inserted tables, recorded with them.
    fingerprints: dict[tuple[str, str], str] = field(default_factory=dict)
    unchanged: int = 0
    # How many descriptions of the connection have each status once the plan is written (as of
    # the read it was computed from): for reporting, without counting them in the store again.
    statuses_after: dict[str, int] = field(default_factory=dict)
    # What the catalogue holds once the plan is written (None: nothing to record).
    snapshot: CatalogueSnapshot | None = None

    @property
    def is_empty(self) -> bool:
        return not (
            self.inserts
            or self.deprecations
            or self.restores
            or self.retypes
            or self.expired_leases
            or self.renames
        )

    def summary(self) -> dict[str, int]:
        return {
            "added": len(self.inserts),
            "deprecated": len(self.deprecations),
            "restored": len(self.restores),
            "renamed": len(self.renames),
            "retyped": len(self.retypes),
            "expired_leases": len(self.expired_leases),
            "unchanged": self.unchanged,
        }


def plan_refresh(
    stored: list[StoredTable],
    listing: Listing,
    now: datetime,
    *,
    allow_empty_schemas: Collection[str] = (),
) -> RefreshPlan:
    """Decide every status change of one refresh.

    Raises EmptyDatabase when a listed schema came back empty (or missing) although the catalogue
    holds descriptions for it: that is far more often a permissions or connection problem than a
    database that really lost every table, and deprecating it all would be a catalogue-wide loss.
    A schema in `allow_empty_schemas` is one a person confirmed empty: its tables are deprecated,
    this once (the confirmation belongs to one refresh, never to the connection).
    """
    stored_by_schema: dict[str, list[StoredTable]] = defaultdict(list)
    for row in stored:
        stored_by_schema[row.schema_name].append(row)

    schemas = dict(listing.schemas)
    for schema, live in listing.schemas.items():
        described = sum(r.status != Status.DEPRECATED for r in stored_by_schema.get(schema, []))
        if not live and described and schema in allow_empty_schemas:
            schemas[schema] = []
        elif not live and described:
            raise EmptyDatabase(empty_schema_message(schema, described), {"schema_name": schema})
        elif live is None:
            raise InvalidDatabaseConnection(
                f"schema {schema!r} does not exist in the database", {"schema_name": schema}
            )

    live_by_key = {
        (t.schema_name, t.table_name): t for tables in schemas.values() for t in tables or []
    }
    stored_keys = set()
    deprecations, restores, retypes, expired = [], [], [], []
    unchanged = 0
    for row in stored:
        stored_keys.add(row.key)
        live = live_by_key.get(row.key)
        if live is None:
            # Gone from its schema, or its schema was removed from the connection.
            if row.status != Status.DEPRECATED:
                deprecations.append(row)
            else:
                unchanged += 1
        elif row.status == Status.DEPRECATED:
            restores.append(Restore(row, live.table_type))
        elif row.status == Status.SYNCHRONIZING and _lease_expired(row, now):
            expired.append(row)
            if row.table_type != live.table_type:
                # Else the next refresh would find the kind still to fix: not idempotent.
                retypes.append(Restore(row, live.table_type))
        elif row.table_type != live.table_type:
            retypes.append(Restore(row, live.table_type))
        else:
            unchanged += 1

    inserts = [t for key, t in sorted(live_by_key.items()) if key not in stored_keys]
    after = Counter(row.status.value for row in stored)
    after[Status.NOT_SCANNED.value] += len(inserts) + len(restores)
    after[Status.DEPRECATED.value] += len(deprecations) - len(restores)
    after[Status.FAILED.value] += len(expired)
    after[Status.SYNCHRONIZING.value] -= len(expired)
    for row in deprecations:
        after[row.status.value] -= 1
    return RefreshPlan(
        inserts=inserts,
        deprecations=deprecations,
        restores=restores,
        retypes=retypes,
        expired_leases=expired,
        unchanged=unchanged,
        statuses_after={status: n for status, n in after.items() if n},
    )


def empty_schema_message(schema: str, described: int) -> str:
    """The empty_database message: which schema, and the ways out (API, CLI and Dagster UI)."""
    return (
        f"schema {schema!r} listed no tables or views but the catalogue describes {described} "
        "of them; nothing was changed. If the connection's user can no longer see them, fix its "
        "permissions or schemas. If the schema really is empty now, refresh once more confirming "
        f"it, which deprecates its tables: `tdsync refresh CONNECTION --allow-empty {schema}`, "
        f'POST /api/v1/table-descriptions/refresh with "allow_empty_schemas": ["{schema}"], or '
        f"the refresh run's config allow_empty_schemas: [{schema}] in the Dagster Launchpad"
    )


def _lease_expired(row: StoredTable, now: datetime) -> bool:
    return row.lease_expires_at is None or row.lease_expires_at <= now


def plan_renames(plan: RefreshPlan, fingerprints: dict[tuple[str, str], str]) -> RefreshPlan:
    """The plan with renames found: `fingerprints` are the new tables' (schema, name) -> fingerprint.

    In one schema, a vanished table (not already DEPRECATED) and a new one with the same
    fingerprint are one table renamed, when neither has another candidate: an ambiguous match
    could hand one table's descriptions to another, which is worse than a plain deprecation.
    """
    vanished: dict[tuple[str, str], list[StoredTable]] = defaultdict(list)
    for row in plan.deprecations:
        if row.fingerprint is not None:
            vanished[(row.schema_name, row.fingerprint)].append(row)
    new: dict[tuple[str, str], list[LiveTable]] = defaultdict(list)
    for table in plan.inserts:
        found = fingerprints.get((table.schema_name, table.table_name))
        if found is not None:
            new[(table.schema_name, found)].append(table)
    renames = [
        Rename(rows[0], new[key][0].table_name, key[1], new[key][0].table_type)
        for key, rows in vanished.items()
        if len(rows) == 1 and len(new.get(key, [])) == 1
    ]
    renamed_ids = {r.stored.id for r in renames}
    taken = {(r.stored.schema_name, r.table_name) for r in renames}
    after = Counter(plan.statuses_after)
    for rename in renames:
        # Counted as a deprecation and an insert; it stays what it was.
        after[rename.stored.status.value] += 1
        after[Status.DEPRECATED.value] -= 1
        after[Status.NOT_SCANNED.value] -= 1
    return replace(
        plan,
        inserts=[t for t in plan.inserts if (t.schema_name, t.table_name) not in taken],
        deprecations=[r for r in plan.deprecations if r.id not in renamed_ids],
        renames=renames,
        fingerprints={k: v for k, v in fingerprints.items() if k not in taken},
        statuses_after={status: n for status, n in after.items() if n},
    )


def listing_digest(listing: Listing) -> str:
    """A digest of everything in a listing that a plan depends on: schemas, names and kinds."""
    lines = sorted(
        f"{schema}\x00{'-' if tables is None else len(tables)}"
        for schema, tables in listing.schemas.items()
    )
    lines += sorted(
        f"{t.schema_name}\x00{t.table_name}\x00{t.table_type.value}"
        for tables in listing.schemas.values()
        for t in tables or []
    )
    return hashlib.sha256("\x01".join(lines).encode()).hexdigest()


def plan_from_snapshot(
    snapshot: CatalogueSnapshot | None, version: str, digest: str, now: datetime
) -> RefreshPlan | None:
    """The (empty) plan when `snapshot` (the last refresh's, still holding: nobody wrote since)
    proves the catalogue unchanged: the live listing is the one it was computed from, and no
    scan lease has run out since. None: read the catalogue and plan from it. `version` is the
    one this refresh's read gave, at which the snapshot is recorded again."""
    if snapshot is None or snapshot.listing != digest:
        return None
    if snapshot.lease_expires_first is not None and snapshot.lease_expires_first <= now:
        return None  # a scan's lease ran out: the full read finds and expires it
    return RefreshPlan(
        unchanged=sum(snapshot.statuses.values()),
        statuses_after=dict(snapshot.statuses),
        snapshot=replace(snapshot, version=version),  # recorded again at this version
    )


def with_snapshot(
    plan: RefreshPlan, stored: list[StoredTable], version: str, digest: str
) -> RefreshPlan:
    """The plan, with what the catalogue holds once it is written (`stored`: the rows it was
    planned from, read after the refresh gave the catalogue version `version`)."""
    expired = {row.id for row in plan.expired_leases}
    leases = [
        row.lease_expires_at
        for row in stored
        if row.status == Status.SYNCHRONIZING and row.id not in expired and row.lease_expires_at
    ]
    snapshot = CatalogueSnapshot(
        version=version,
        listing=digest,
        statuses=dict(plan.statuses_after),
        lease_expires_first=min(leases, default=None),
    )
    return replace(plan, snapshot=snapshot)
