"""The fake store keeps the real one's contract: the same assertions run against
tdsync_tests/fakes.py's FakeStore (fast tier) and the real CatalogueStore over a MongoDB wire
server (integration tier), so the fast tier's routes, schedules and sensors cannot drift from it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from bson import ObjectId

from tdsync.domain.errors import (
    ConnectionNotFound,
    DuplicateAlias,
    InvalidObjectId,
    TableDescriptionNotFound,
    ValidationFailed,
)
from tdsync.domain.models import Status, utcnow
from tdsync_tests.fakes import describe

SECRET = "postgresql://reader:hunter2@db.internal:5432/sales"


def connections_are_masked_unique_and_found_by_id_or_alias(store) -> None:
    conn = store.add_connection(alias="sales", connection_uri=SECRET, refresh_schedule="0 * * * *")
    store.add_connection(alias="archive", connection_uri="sqlite:///a.db")

    assert conn.connection_uri == "postgresql://reader:*****@db.internal:5432/sales"
    assert (conn.dialect, conn.refresh_schedule, conn.auto_scan) == (
        "postgresql",
        "0 * * * *",
        False,
    )
    assert store.get_connection(conn.id) == store.get_connection("sales") == conn
    assert [c.alias for c in store.list_connections()] == ["archive", "sales"]
    assert store.connection_uri(conn.id) == SECRET
    assert store.unmasked_uri(conn.id, conn.connection_uri) == SECRET
    with pytest.raises(DuplicateAlias):
        store.add_connection(alias="sales", connection_uri="sqlite:///b.db")
    with pytest.raises(DuplicateAlias):
        store.update_connection(conn.id, alias="archive")
    with pytest.raises(ValidationFailed):
        store.add_connection(
            alias="bad", connection_uri="sqlite:///b.db", scan_schedule="61 * * * *"
        )
    with pytest.raises(ConnectionNotFound):
        store.get_connection(str(ObjectId()))
    with pytest.raises(ConnectionNotFound):
        store.get_connection("nobody")


def updates_keep_the_masked_password_and_validate(store) -> None:
    conn = store.add_connection(alias="sales", connection_uri=SECRET)

    changed = store.update_connection(
        conn.id,
        alias="sales-eu",
        connection_uri="postgresql://reader:*****@db.internal:5432/sales_eu",
        refresh_schedule="*/5 * * * *",
        auto_scan=True,
    )

    assert (changed.alias, changed.refresh_schedule, changed.auto_scan) == (
        "sales-eu",
        "*/5 * * * *",
        True,
    )
    assert store.connection_uri(conn.id) == SECRET.replace("/sales", "/sales_eu")
    with pytest.raises(ValidationFailed, match="refresh_schedule"):
        store.update_connection(conn.id, refresh_schedule="every hour")
    assert store.update_connection(conn.id, refresh_schedule=None).refresh_schedule is None
    with pytest.raises(ConnectionNotFound):
        store.update_connection(str(ObjectId()), alias="x")


def deleting_a_connection_deletes_its_descriptions(store) -> None:
    conn = store.add_connection(alias="shop", connection_uri="sqlite:///s.db").id
    desc = describe(store, conn, "main", "orders")

    store.delete_connection(conn)

    assert store.list_connections() == []
    with pytest.raises(TableDescriptionNotFound):
        store.get_description(desc)
    with pytest.raises(ConnectionNotFound):
        store.delete_connection(conn)


def descriptions_are_sorted_filtered_and_paged(store) -> None:
    conn = store.add_connection(alias="shop", connection_uri="sqlite:///s.db").id
    ids = [
        describe(store, conn, "sales", "orders", columns=[{"name": "id"}]),
        describe(store, conn, "main", "orders", status="SCANNED"),
        describe(store, conn, "main", "customers"),
    ]

    def names(**filters) -> list[str]:
        docs = store.description_docs(conn, **filters)
        return [f"{d['schema_name']}.{d['table_name']}" for d in docs]

    assert names() == ["main.customers", "main.orders", "sales.orders"]
    assert names(status=Status.SCANNED) == ["main.orders"]
    assert names(table_name="sales.orders") == ["sales.orders"]
    assert names(schema_name="main", table_name="") == ["main.customers", "main.orders"]
    assert names(limit=2) == ["sales.orders", "main.orders"]
    assert names(limit=2, after=ids[1]) == ["main.customers"]
    assert store.get_description(ids[0]).table_name == "orders"
    edited = store.edit_description(
        ids[0], fields={"description": "d"}, columns={"id": {"description": "k"}}
    )
    assert (edited.description, edited.columns[0].description) == ("d", "k")
    with pytest.raises(ValidationFailed, match="unknown column"):
        store.edit_description(ids[0], fields={}, columns={"nope": {"description": "?"}})
    merged = store.merge_metadata([ids[1], ids[0]], {"dh_internal": {"id": 1}})
    assert [(d.schema_name, d.metadata) for d in merged] == [
        ("main", {"dh_internal": {"id": 1}}),
        ("sales", {"dh_internal": {"id": 1}}),
    ]
    kept = store.merge_metadata([ids[1]], {"other": 2})
    assert kept[0].metadata == {"dh_internal": {"id": 1}, "other": 2}
    with pytest.raises(TableDescriptionNotFound):
        store.get_description(str(ObjectId()))
    with pytest.raises(InvalidObjectId):
        store.get_description("nope")


def statuses_are_counted_and_synchronizing_rows_settled_by_run(store) -> None:
    conn = store.add_connection(alias="shop", connection_uri="sqlite:///s.db").id
    later = utcnow() + timedelta(minutes=5)
    describe(store, conn, "main", "mine", status="SYNCHRONIZING", scan_run_id="r1")
    describe(store, conn, "main", "unclaimed", status="SYNCHRONIZING", scan_run_id=None)
    describe(store, conn, "main", "other", status="SYNCHRONIZING", scan_run_id="r2",
             scan_lease_expires_at=later)  # fmt: skip
    describe(store, conn, "main", "broken", status="FAILED", error_message="denied")

    assert store.descriptions_with_status(conn, Status.SYNCHRONIZING) == 3
    assert store.failed_descriptions(conn) == {"main.broken": "denied"}
    assert store.scans_past_lease(conn, utcnow()) == ["main.mine", "main.unclaimed"]
    assert store.fail_synchronizing(conn, error_message="run r1 failed", scan_run_id="r1") == 2
    assert store.failed_descriptions(conn) == {
        "main.broken": "denied",
        "main.mine": "run r1 failed",
        "main.unclaimed": "run r1 failed",
    }
    assert store.fail_synchronizing(conn, error_message="all") == 1
    assert store.descriptions_with_status(conn, Status.SYNCHRONIZING) == 0


def one_lease_holder_at_a_time_until_release_or_expiry(store) -> None:
    conn = store.add_connection(alias="shop", connection_uri="sqlite:///s.db").id
    now = utcnow()

    assert store.connection_lease(conn) is None
    assert store.acquire_connection_lease(conn, holder="r1", kind="scan", ttl_s=60, now=now)
    assert store.acquire_connection_lease(conn, holder="r1", kind="scan", ttl_s=60, now=now)
    assert not store.acquire_connection_lease(conn, holder="r2", kind="scan", ttl_s=60, now=now)
    assert store.release_connection_leases("r1", succeeded=True, outcome={"n": 1}, now=now) == 1
    lease = store.connection_lease(conn)
    assert lease["holder"] is None
    assert {k: lease["last"][k] for k in ("holder", "succeeded", "outcome")} == {
        "holder": "r1",
        "succeeded": True,
        "outcome": {"n": 1},
    }
    assert store.acquire_connection_lease(conn, holder="r2", kind="refresh", ttl_s=1, now=now)
    later = now + timedelta(seconds=2)
    assert store.acquire_connection_lease(conn, holder="r3", kind="scan", ttl_s=60, now=later)
    assert store.connection_lease(conn)["holder"] == "r3"
    assert store.release_connection_leases("r2", succeeded=False, now=later) == 0


CONTRACT: list[Callable] = [
    connections_are_masked_unique_and_found_by_id_or_alias,
    updates_keep_the_masked_password_and_validate,
    deleting_a_connection_deletes_its_descriptions,
    descriptions_are_sorted_filtered_and_paged,
    statuses_are_counted_and_synchronizing_rows_settled_by_run,
    one_lease_holder_at_a_time_until_release_or_expiry,
]


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_the_fake_store_keeps_the_contract(check, fake_store) -> None:
    check(fake_store)


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_the_real_store_keeps_the_contract(check, store) -> None:
    check(store)
