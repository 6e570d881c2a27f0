"""Issue 18: a warm refresh proves an unchanged catalogue unchanged from its version document.

Properties on the real store (SecantusDB): refreshes (planned, then applied later, so other
writes land in between, as with concurrent runs), scan claims, settled and failed scans, expired
leases, lost version documents and deleted connections are interleaved at random; at every
refresh, the plan the cheap path gives must be exactly the plan a full read of the rows gives.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from pymongo.errors import AutoReconnect

from tdsync.domain.errors import StorageUnavailable
from tdsync.domain.models import ColumnDescription, Status, TableType
from tdsync.domain.refresh_rules import Listing, LiveTable, RefreshPlan, plan_refresh, plan_renames
from tdsync.domain.scan_model import TableScan
from tdsync.services.refresh import plan_against_catalogue
from tdsync.store import VERSIONS, CatalogueStore

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NAMES = ["a", "b", "c", "d", "e"]
# Two tables share a structure, so vanishing one while the other appears is a rename.
FINGERPRINTS = {"a": "f1", "b": "f1", "c": "f2", "d": "f3", "e": "f4"}


def fingerprint(tables: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    return {(s, t): FINGERPRINTS[t] for s, t in tables if t in FINGERPRINTS}


@st.composite
def listings(draw) -> Listing:
    schemas: dict[str, list[LiveTable] | None] = {}
    for schema in ["public", *(["sales"] if draw(st.booleans()) else [])]:
        names = draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=1))
        kinds = [draw(st.sampled_from([TableType.TABLE, TableType.VIEW])) for _ in names]
        schemas[schema] = [LiveTable(schema, n, k) for n, k in zip(names, kinds, strict=True)]
    return Listing(schemas)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("plan"), listings()),
        st.tuples(st.just("apply")),
        st.tuples(st.just("claim"), st.integers(-3, 3), st.booleans()),
        st.tuples(st.just("settle"), st.booleans()),
        st.tuples(st.just("fail")),
        st.tuples(st.just("expire")),
        st.tuples(st.just("tick"), st.integers(1, 4)),
        st.tuples(st.just("lose_version")),
        st.tuples(st.just("delete_connection")),
    ),
    max_size=30,
)


@dataclass
class World:
    store: CatalogueStore
    connection_id: str
    now: datetime = START
    pending: list[RefreshPlan] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    reads: list[int] = field(default_factory=list)  # full reads of the rows by the cheap path

    def new_connection(self) -> None:
        self.connection_id = _connection(self.store)
        self.pending, self.runs = [], []


def _connection(store: CatalogueStore) -> str:
    return store.add_connection(
        alias=f"versions-{uuid.uuid4().hex[:8]}", connection_uri="sqlite:////tmp/nowhere.db"
    ).id


def full_plan(store: CatalogueStore, cid: str, listing: Listing, now: datetime) -> RefreshPlan:
    plan = plan_refresh(CatalogueStore.stored_tables(store, cid), listing, now)
    if plan.inserts:
        plan = plan_renames(
            plan, fingerprint([(t.schema_name, t.table_name) for t in plan.inserts])
        )
    return plan


def decisions(plan: RefreshPlan) -> dict:
    """What a plan writes and reports, comparable between two plans."""
    return {
        "inserts": sorted((t.schema_name, t.table_name, t.table_type) for t in plan.inserts),
        "deprecations": sorted(r.id for r in plan.deprecations),
        "restores": sorted((r.stored.id, r.table_type) for r in plan.restores),
        "retypes": sorted((r.stored.id, r.table_type) for r in plan.retypes),
        "expired": sorted(r.id for r in plan.expired_leases),
        "renames": sorted((r.stored.id, r.table_name) for r in plan.renames),
        "statuses": {k: v for k, v in plan.statuses_after.items() if v},
        "unchanged": plan.unchanged,
    }


def step(world: World, action: tuple) -> None:
    store, cid, now = world.store, world.connection_id, world.now
    kind = action[0]
    if kind == "plan":
        listing = action[1]
        expected = full_plan(store, cid, listing, now)  # read first: nothing lands in between
        reads = len(world.reads)
        plan = plan_against_catalogue(store, cid, listing, now, fingerprint=fingerprint)
        event("proven unchanged" if len(world.reads) == reads else "read in full")
        assert decisions(plan) == decisions(expected)
        world.pending.append(plan)
    elif kind == "apply" and world.pending:
        store.apply_refresh(cid, world.pending.pop(0), now)
    elif kind == "claim":
        rows = [r for r in store.stored_tables(cid) if r.status != Status.DEPRECATED]
        ids = None if action[2] else [r.id for r in rows[::2]]
        run = f"run-{len(world.runs)}"
        world.runs.append(run)
        store.mark_for_scan(
            cid, ids, run_id=run, lease_expires_at=now + timedelta(minutes=action[1])
        )
    elif kind == "settle" and world.runs:
        run = world.runs[-1]
        held = store.descriptions.find({"db_connection_id": cid, "scan_run_id": run})
        targets = [t for t in store.scan_targets(connection_id=cid) if t.id in _ids(held)]
        scans = [
            TableScan(t, fingerprint=FINGERPRINTS.get(t.table_name), columns=[_column()])
            if action[1] or i % 2
            else TableScan(t, error="scan failed")
            for i, t in enumerate(targets)
        ]
        store.save_scans(run, scans, now)
    elif kind == "fail":
        store.fail_synchronizing(cid, error_message="run failed")
    elif kind == "expire":
        store.expire_scan_leases(cid, now)
    elif kind == "tick":
        world.now = now + timedelta(minutes=action[1])
    elif kind == "lose_version":
        store.db[VERSIONS].delete_one({"_id": cid})
    elif kind == "delete_connection":
        store.delete_connection(cid)
        assert store.db[VERSIONS].find_one({"_id": cid}) is None
        world.new_connection()


def _ids(docs) -> set[str]:
    return {str(d["_id"]) for d in docs}


def _column() -> ColumnDescription:
    return ColumnDescription(name="id", data_type="INTEGER")


@settings(
    max_examples=int(os.environ.get("TDSYNC_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=steps, last=listings())
def test_the_version_document_answers_as_a_full_read_would(
    store: CatalogueStore, actions: list[tuple], last: Listing
) -> None:
    world = World(store, _connection(store))
    store.stored_tables = lambda cid: (
        world.reads.append(1) or CatalogueStore.stored_tables(store, cid)
    )
    try:
        settle_and_check(world, actions, last)
    finally:
        del store.stored_tables


def settle_and_check(world: World, actions: list[tuple], last: Listing) -> None:
    store = world.store
    note(f"last: {last}")
    for action in actions:
        note(f"{action}")
        step(world, action)
    # Whatever happened, refreshing twice settles the catalogue, and the second refresh is
    # answered by the version document with the store's true counts.
    for plan in world.pending:
        store.apply_refresh(world.connection_id, plan, world.now)
    world.pending.clear()
    for _ in range(2):
        step(world, ("plan", last))
        step(world, ("apply",))
    _, known = store.catalogue_version(world.connection_id)
    assert known is not None  # the last refresh recorded what it found
    stored = store.stored_tables(world.connection_id)
    counts: dict[str, int] = {}
    for row in stored:
        counts[row.status.value] = counts.get(row.status.value, 0) + 1
    leases = [r.lease_expires_at for r in stored if r.status == Status.SYNCHRONIZING]
    if not any(lease <= world.now for lease in leases if lease):
        assert known.statuses == counts


def refresh(store: CatalogueStore, cid: str, listing: Listing, now: datetime) -> RefreshPlan:
    plan = plan_against_catalogue(store, cid, listing, now, fingerprint=fingerprint)
    store.apply_refresh(cid, plan, now)
    return plan


def public(*names: str) -> Listing:
    return Listing({"public": [LiveTable("public", n, TableType.TABLE) for n in names]})


def read_rows(store: CatalogueStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the full reads of a connection's rows the refreshes make from now on."""
    reads: list[int] = []
    original = store.stored_tables

    def counted(cid: str):
        reads.append(1)
        return original(cid)

    monkeypatch.setattr(store, "stored_tables", counted)
    return reads


def test_an_unchanged_catalogue_is_not_read_and_any_write_makes_the_next_refresh_read(
    store: CatalogueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = _connection(store)
    reads = read_rows(store, monkeypatch)
    refresh(store, cid, public("a", "b"), START)
    plan = refresh(store, cid, public("a", "b"), START)
    assert len(reads) == 1 and plan.statuses_after == {"NOT_SCANNED": 2}
    assert plan.unchanged == 2

    store.mark_for_scan(cid, None, run_id="r", lease_expires_at=START + timedelta(minutes=5))
    refresh(store, cid, public("a", "b"), START)  # a scan claimed rows: read again
    plan = refresh(store, cid, public("a", "b"), START)
    assert len(reads) == 2 and plan.statuses_after == {"SYNCHRONIZING": 2}

    plan = refresh(store, cid, public("a", "b", "c"), START)  # the listing changed: read
    assert len(reads) == 3 and [t.table_name for t in plan.inserts] == ["c"]


def test_a_scan_lease_that_runs_out_is_found_although_nothing_was_written(
    store: CatalogueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = _connection(store)
    refresh(store, cid, public("a", "b"), START)
    store.mark_for_scan(cid, None, run_id="r", lease_expires_at=START + timedelta(minutes=5))
    refresh(store, cid, public("a", "b"), START)
    reads = read_rows(store, monkeypatch)
    assert refresh(store, cid, public("a", "b"), START + timedelta(minutes=4)).is_empty
    assert reads == []  # the lease still runs: proven unchanged
    later = refresh(store, cid, public("a", "b"), START + timedelta(minutes=6))
    assert reads == [1] and len(later.expired_leases) == 2
    assert {d.status for d in store.list_descriptions(cid)} == {Status.FAILED}


def test_a_write_between_a_refresh_read_and_its_write_leaves_no_snapshot(
    store: CatalogueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = _connection(store)
    refresh(store, cid, public("a"), START)
    plan = plan_against_catalogue(store, cid, public("a", "b"), START, fingerprint=fingerprint)
    store.mark_for_scan(cid, None, run_id="r", lease_expires_at=START + timedelta(minutes=5))
    store.apply_refresh(cid, plan, START)  # planned before the claim: its snapshot is stale
    reads = read_rows(store, monkeypatch)
    plan = refresh(store, cid, public("a", "b"), START)
    assert reads == [1] and plan.statuses_after == {"SYNCHRONIZING": 1, "NOT_SCANNED": 1}


class FailingHalfWay:
    """The descriptions collection, whose next bulk write stores its first half and then fails
    as a store that went away would."""

    def __init__(self, collection) -> None:
        self.collection = collection
        self.failed = False
        self.sizes: list[int] = []  # of every bulk write

    def __getattr__(self, name: str):
        return getattr(self.collection, name)

    def bulk_write(self, ops, **kwargs):
        self.sizes.append(len(ops))
        if self.failed:
            return self.collection.bulk_write(ops, **kwargs)
        self.failed = True
        self.collection.bulk_write(ops[: len(ops) // 2], **kwargs)
        raise AutoReconnect("connection reset by peer")


def test_a_cold_refresh_that_fails_half_way_is_completed_by_the_next_one(
    store: CatalogueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = _connection(store)
    names = [f"t{i:03d}" for i in range(300)]
    failing = FailingHalfWay(store.descriptions)
    monkeypatch.setattr(store, "descriptions", failing)
    monkeypatch.setattr("tdsync.store.descriptions.WRITE_BATCH", 150)
    with pytest.raises(StorageUnavailable):
        refresh(store, cid, public(*names), START)
    assert failing.sizes == [150]  # the first batch failed after writing half of it
    assert store.descriptions.count_documents({"db_connection_id": cid}) == 75

    reads = read_rows(store, monkeypatch)
    plan = refresh(store, cid, public(*names), START)  # the half-written state is read in full
    assert reads == [1] and len(plan.inserts) == 225
    assert failing.sizes == [150, 150, 75]  # the rest, in batches of WRITE_BATCH
    rows = store.list_descriptions(cid)
    assert sorted(d.table_name for d in rows) == names  # each once: nothing lost, no duplicate
    assert {d.status for d in rows} == {Status.NOT_SCANNED}
    again = refresh(store, cid, public(*names), START)
    assert again.is_empty and again.statuses_after == {"NOT_SCANNED": 300} and reads == [1]
