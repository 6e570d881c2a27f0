"""The merge rules of SPEC.md ("Refresh semantics"), on the pure plan_refresh.

Example tests pin each row of the status table and each safety rule; hypothesis properties pin
idempotence, that no description is ever lost, and the status table for any mix of tables.
The same properties run against the real store in test_store.py.
"""

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdsync.domain.errors import EmptyDatabase, InvalidDatabaseConnection
from tdsync.domain.models import Status, TableType
from tdsync.domain.refresh_rules import (
    Listing,
    LiveTable,
    RefreshPlan,
    StoredTable,
    plan_refresh,
    plan_renames,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PAST = NOW - timedelta(minutes=1)
FUTURE = NOW + timedelta(minutes=15)


def stored(
    table: str,
    status: Status = Status.NOT_SCANNED,
    *,
    schema: str = "public",
    kind: TableType = TableType.TABLE,
    lease: datetime | None = None,
) -> StoredTable:
    return StoredTable(f"id-{schema}-{table}", schema, table, kind, status, lease)


def live(
    *tables: str, schema: str = "public", kind: TableType = TableType.TABLE
) -> list[LiveTable]:
    return [LiveTable(schema, t, kind) for t in tables]


def listing(**schemas: list[LiveTable] | None) -> Listing:
    return Listing(dict(schemas))


# -- the status table, row by row ------------------------------------------------------------


def test_new_live_table_is_inserted_not_scanned() -> None:
    plan = plan_refresh([], listing(public=live("orders", "Users", "users")), NOW)
    assert [(t.schema_name, t.table_name) for t in plan.inserts] == [
        ("public", "Users"),
        ("public", "orders"),
        ("public", "users"),
    ]
    assert plan.summary()["added"] == 3


@pytest.mark.parametrize("status", list(Status))
def test_table_gone_from_its_schema_is_deprecated_whatever_its_status(status: Status) -> None:
    row = stored("gone", status, lease=FUTURE)
    plan = plan_refresh([row, stored("kept")], listing(public=live("kept")), NOW)
    if status == Status.DEPRECATED:
        assert plan.is_empty  # already deprecated: nothing to write
    else:
        assert plan.deprecations == [row]
        assert plan.summary() == {
            "added": 0,
            "deprecated": 1,
            "restored": 0,
            "renamed": 0,
            "retyped": 0,
            "expired_leases": 0,
            "unchanged": 1,
        }


def test_deprecated_table_that_came_back_is_restored() -> None:
    row = stored("orders", Status.DEPRECATED, kind=TableType.TABLE)
    plan = plan_refresh([row], listing(public=live("orders", kind=TableType.VIEW)), NOW)
    assert [(r.stored, r.table_type) for r in plan.restores] == [(row, TableType.VIEW)]
    assert not plan.inserts  # the stored document (and its description) is reused


@pytest.mark.parametrize("status", [Status.NOT_SCANNED, Status.SCANNED, Status.FAILED])
def test_live_table_in_a_settled_status_is_unchanged(status: Status) -> None:
    plan = plan_refresh([stored("orders", status)], listing(public=live("orders")), NOW)
    assert plan.is_empty
    assert plan.unchanged == 1


def test_synchronizing_table_with_a_live_lease_is_unchanged() -> None:
    row = stored("orders", Status.SYNCHRONIZING, lease=FUTURE)
    plan = plan_refresh([row], listing(public=live("orders")), NOW)
    assert plan.is_empty
    assert plan.unchanged == 1


@pytest.mark.parametrize("lease", [PAST, NOW, None], ids=["expired", "expiring-now", "no-lease"])
def test_synchronizing_table_with_an_expired_lease_fails(lease: datetime | None) -> None:
    row = stored("orders", Status.SYNCHRONIZING, lease=lease)
    plan = plan_refresh([row], listing(public=live("orders")), NOW)
    assert plan.expired_leases == [row]
    assert plan.summary()["expired_leases"] == 1


def test_table_whose_kind_changed_is_retyped_keeping_its_status() -> None:
    row = stored("orders", Status.SCANNED, kind=TableType.TABLE)
    plan = plan_refresh(
        [row], listing(public=live("orders", kind=TableType.MATERIALIZED_VIEW)), NOW
    )
    assert [(r.stored, r.table_type) for r in plan.retypes] == [(row, TableType.MATERIALIZED_VIEW)]
    assert not plan.deprecations and not plan.restores


def test_expired_lease_on_a_table_whose_kind_changed_is_settled_in_one_refresh() -> None:
    row = stored("orders", Status.SYNCHRONIZING, kind=TableType.TABLE, lease=PAST)
    plan = plan_refresh([row], listing(public=live("orders", kind=TableType.VIEW)), NOW)
    assert plan.expired_leases == [row]
    assert [(r.stored, r.table_type) for r in plan.retypes] == [(row, TableType.VIEW)]


def test_names_differing_only_in_case_are_two_tables() -> None:
    plan = plan_refresh([stored("users")], listing(public=live("Users", "users")), NOW)
    assert [t.table_name for t in plan.inserts] == ["Users"]
    assert plan.unchanged == 1


# -- safety rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("empty", [[], None], ids=["no-tables", "schema-missing"])
def test_empty_listing_for_a_described_schema_is_empty_database_not_a_deprecation(empty) -> None:
    # A listing that failed outright never gets here: sources.list_live_tables raises
    # InvalidDatabaseConnection first (pinned end to end in test_refresh_job.py).
    rows = [stored("orders"), stored("customers", Status.SCANNED)]
    with pytest.raises(EmptyDatabase) as err:
        plan_refresh(rows, listing(public=empty), NOW)
    assert err.value.error_code == "empty_database"
    assert err.value.detail == {"schema_name": "public"}


def test_empty_schema_is_refused_even_when_other_schemas_are_fine() -> None:
    rows = [stored("orders"), stored("invoices", schema="sales")]
    with pytest.raises(EmptyDatabase):
        plan_refresh(rows, listing(public=live("orders"), sales=[]), NOW)


@pytest.mark.parametrize("empty", [[], None], ids=["no-tables", "schema-missing"])
def test_a_schema_confirmed_empty_has_its_tables_deprecated_and_no_other(empty) -> None:
    rows = [stored("orders"), stored("invoices", Status.SCANNED, schema="sales")]

    plan = plan_refresh(
        rows, listing(public=live("orders"), sales=empty), NOW, allow_empty_schemas=["sales"]
    )

    assert [r.table_name for r in plan.deprecations] == ["invoices"]
    assert plan.unchanged == 1 and not plan.inserts


def test_confirming_one_schema_empty_does_not_excuse_another() -> None:
    rows = [stored("orders"), stored("invoices", schema="sales")]

    with pytest.raises(EmptyDatabase) as err:
        plan_refresh(rows, listing(public=[], sales=[]), NOW, allow_empty_schemas=["sales"])

    assert err.value.detail == {"schema_name": "public"}
    assert "--allow-empty public" in err.value.message


def test_empty_schema_whose_descriptions_are_all_deprecated_is_fine() -> None:
    plan = plan_refresh([stored("old", Status.DEPRECATED)], listing(public=[]), NOW)
    assert plan.is_empty


def test_empty_schema_never_described_is_fine() -> None:
    plan = plan_refresh([stored("orders")], listing(public=live("orders"), staging=[]), NOW)
    assert plan.is_empty


def test_listed_schema_missing_from_the_database_is_an_invalid_connection() -> None:
    with pytest.raises(InvalidDatabaseConnection, match="does not exist"):
        plan_refresh([], listing(public=live("orders"), typo=None), NOW)


def test_schema_removed_from_the_connection_is_deprecated() -> None:
    rows = [stored("orders"), stored("invoices", schema="sales"), stored("x", schema="sales")]
    plan = plan_refresh(rows, listing(public=live("orders")), NOW)
    assert sorted(r.key for r in plan.deprecations) == [("sales", "invoices"), ("sales", "x")]
    assert plan.unchanged == 1


# -- properties, over an in-memory model of the store ------------------------------------------

SCHEMAS = ["public", "sales", "Sales"]
TABLES = ["users", "Users", "orders", "order_items", "v_orders"]
KINDS = list(TableType)


@dataclass
class Row:
    """One stored description as the model keeps it: refresh-owned and people's fields."""

    id: str
    schema_name: str
    table_name: str
    table_type: TableType
    status: Status
    lease: datetime | None
    error_message: str | None = None
    people: dict[str, Any] = field(default_factory=dict)

    def as_stored(self) -> StoredTable:
        return StoredTable(
            self.id, self.schema_name, self.table_name, self.table_type, self.status, self.lease
        )


def apply_plan(model: dict[tuple[str, str], Row], plan: RefreshPlan, now: datetime) -> None:
    """The store's conditional writes (store.apply_refresh), on a dict."""
    for t in plan.inserts:
        key = (t.schema_name, t.table_name)
        if key not in model:
            model[key] = Row(f"new-{key}", *key, t.table_type, Status.NOT_SCANNED, None)
    for r in plan.deprecations:
        if model[r.key].status != Status.DEPRECATED:
            model[r.key].status = Status.DEPRECATED
    for r in plan.restores:
        if model[r.stored.key].status == Status.DEPRECATED:
            model[r.stored.key].status = Status.NOT_SCANNED
            model[r.stored.key].table_type = r.table_type
    for r in plan.retypes:
        model[r.stored.key].table_type = r.table_type
    for r in plan.expired_leases:
        row = model[r.key]
        if row.status == Status.SYNCHRONIZING and (row.lease is None or row.lease <= now):
            row.status, row.lease, row.error_message = Status.FAILED, None, "lease expired"


@st.composite
def stored_rows(draw) -> list[Row]:
    keys = draw(st.lists(st.tuples(st.sampled_from(SCHEMAS), st.sampled_from(TABLES)), unique=True))
    rows = []
    for i, (schema, table) in enumerate(keys):
        status = draw(st.sampled_from(list(Status)))
        lease = (
            draw(st.sampled_from([PAST, NOW, FUTURE, None]))
            if status == Status.SYNCHRONIZING
            else None
        )
        people = {
            "description": draw(st.none() | st.text(max_size=5)),
            "columns": draw(st.lists(st.sampled_from(["id", "name"]), max_size=2)),
            "metadata": draw(st.none() | st.just({"owner": "sales"})),
        }
        kind = draw(st.sampled_from(KINDS))
        rows.append(Row(f"id{i}", schema, table, kind, status, lease, people=people))
    return rows


@st.composite
def live_listings(draw) -> Listing:
    """Any subset of the schemas, each with any subset of tables (kinds may have changed)."""
    listed = draw(st.lists(st.sampled_from(SCHEMAS), unique=True, min_size=1))
    schemas: dict[str, list[LiveTable] | None] = {}
    for schema in listed:
        tables = draw(st.lists(st.sampled_from(TABLES), unique=True))
        schemas[schema] = [LiveTable(schema, t, draw(st.sampled_from(KINDS))) for t in tables]
    return Listing(schemas)


def _expected_error(rows: list[Row], listing_: Listing) -> type[Exception] | None:
    for schema, tables in listing_.schemas.items():
        if not tables and any(
            r.schema_name == schema and r.status != Status.DEPRECATED for r in rows
        ):
            return EmptyDatabase
    return None


@settings(max_examples=150, deadline=None)
@given(rows=stored_rows(), listing_=live_listings())
def test_status_table_holds_for_any_mix_of_stored_and_live_tables(
    rows: list[Row], listing_: Listing
) -> None:
    expected_error = _expected_error(rows, listing_)
    if expected_error:
        with pytest.raises(expected_error):
            plan_refresh([r.as_stored() for r in rows], listing_, NOW)
        return
    plan = plan_refresh([r.as_stored() for r in rows], listing_, NOW)
    before = {(r.schema_name, r.table_name): replace(r) for r in rows}
    model = {k: replace(r) for k, r in before.items()}
    apply_plan(model, plan, NOW)

    live_kinds = {
        (t.schema_name, t.table_name): t.table_type
        for tables in listing_.schemas.values()
        for t in tables or []
    }
    for key, old in before.items():
        new = model[key]
        if key not in live_kinds:
            expected = Status.DEPRECATED
        elif old.status == Status.DEPRECATED:
            expected = Status.NOT_SCANNED
        elif old.status == Status.SYNCHRONIZING and (old.lease is None or old.lease <= NOW):
            expected = Status.FAILED
            assert new.error_message
        else:
            expected = old.status
        assert new.status == expected, (key, old.status)
        assert new.id == old.id
    for key in live_kinds.keys() - before.keys():
        assert model[key].status == Status.NOT_SCANNED
    assert model.keys() == before.keys() | live_kinds.keys()
    summary = plan.summary()
    assert summary["added"] == len(live_kinds.keys() - before.keys())
    assert summary["deprecated"] == sum(
        1 for k, r in before.items() if k not in live_kinds and r.status != Status.DEPRECATED
    )


@settings(max_examples=150, deadline=None)
@given(rows=stored_rows(), listing_=live_listings())
def test_second_refresh_with_nothing_changed_writes_nothing(
    rows: list[Row], listing_: Listing
) -> None:
    if _expected_error(rows, listing_):
        return
    model = {(r.schema_name, r.table_name): replace(r) for r in rows}
    apply_plan(model, plan_refresh([r.as_stored() for r in model.values()], listing_, NOW), NOW)
    again = plan_refresh([r.as_stored() for r in model.values()], listing_, NOW)
    assert again.is_empty, again.summary()
    assert again.unchanged == len(model)
    # Every live table now carries the kind the database reports.
    for tables in listing_.schemas.values():
        for t in tables or []:
            assert model[(t.schema_name, t.table_name)].table_type == t.table_type


@settings(max_examples=150, deadline=None)
@given(rows=stored_rows(), listings=st.lists(live_listings(), min_size=1, max_size=4))
def test_no_description_is_ever_lost_over_any_sequence_of_refreshes(
    rows: list[Row], listings: list[Listing]
) -> None:
    model = {(r.schema_name, r.table_name): replace(r) for r in rows}
    people = {k: dict(r.people) for k, r in model.items()}
    for listing_ in listings:
        try:
            plan = plan_refresh([r.as_stored() for r in model.values()], listing_, NOW)
        except EmptyDatabase:
            continue  # refused whole: nothing written
        apply_plan(model, plan, NOW)
    for key, fields in people.items():
        assert key in model  # no row is ever removed
        assert model[key].people == fields  # people's fields are never touched


# -- renames (SPEC.md, last row of the status table) -------------------------------------------


def fingerprinted(table: str, fingerprint: str, status: Status = Status.SCANNED) -> StoredTable:
    return replace(stored(table, status), fingerprint=fingerprint)


def test_vanished_table_and_new_one_of_the_same_structure_are_one_rename() -> None:
    orders = fingerprinted("orders", "F1")
    plan = plan_refresh([orders], listing(public=live("sales_orders")), NOW)
    plan = plan_renames(plan, {("public", "sales_orders"): "F1"})
    assert [(r.stored, r.table_name) for r in plan.renames] == [(orders, "sales_orders")]
    assert (plan.inserts, plan.deprecations) == ([], [])
    assert plan.statuses_after == {"SCANNED": 1}
    assert plan.summary()["renamed"] == 1


def test_two_candidates_either_way_are_no_rename() -> None:
    one, two = fingerprinted("a", "F"), fingerprinted("b", "F")
    both_gone = plan_renames(
        plan_refresh([one, two], listing(public=live("c")), NOW), {("public", "c"): "F"}
    )
    assert both_gone.renames == [] and len(both_gone.deprecations) == 2
    two_new = plan_renames(
        plan_refresh([one], listing(public=live("c", "d")), NOW),
        {("public", "c"): "F", ("public", "d"): "F"},
    )
    assert two_new.renames == [] and len(two_new.inserts) == 2


def test_same_structure_in_another_schema_is_no_rename() -> None:
    orders = fingerprinted("orders", "F")
    plan = plan_refresh(
        [orders, stored("kept", schema="b")],
        listing(public=live("other"), b=live("kept", "orders", schema="b")),
        NOW,
    )
    plan = plan_renames(plan, {("b", "orders"): "F", ("public", "other"): "G"})
    assert plan.renames == [] and plan.deprecations == [orders]


def test_table_without_a_fingerprint_or_already_deprecated_is_never_renamed() -> None:
    rows = [stored("legacy"), fingerprinted("old", "F", Status.DEPRECATED)]
    plan = plan_refresh(rows, listing(public=live("new1", "new2")), NOW)
    plan = plan_renames(plan, {("public", "new1"): None, ("public", "new2"): "F"})
    assert plan.renames == [] and len(plan.inserts) == 2
