"""The source database drops tdsync's connection (`pg_terminate_backend`) mid-listing and mid-scan.

A connection dropped once is read again on a new connection: the refresh or the table's scan
succeeds. A source that keeps dropping it fails the refresh with `invalid_database_connection`
and nothing is written (no table is deprecated for having been unreadable), or fails only the
tables it was reading; either way a later run converges on the right catalogue, keeping what
people wrote.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.errors import InvalidDatabaseConnection
from tdsync.domain.models import Status
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import PG_ADMIN_URL, _server_database, execute
from tdsync_tests.test_reliability.conftest import BackendKiller, duplicates


def listing(statement: str) -> bool:
    return "pg_catalog.pg_namespace n" in statement and "relkind" in statement


def sampling(table: str):
    return lambda statement: statement.startswith("SELECT") and f"\nFROM {table}" in statement


@pytest.fixture
def source() -> Iterator[str]:
    server = _server_database(PG_ADMIN_URL, "PostgreSQL at 127.0.0.1:5432")
    url = next(server)
    execute(
        url,
        *(
            statement
            for name in ("orders", "customers", "legacy")
            for statement in (
                f"CREATE TABLE {name} (id int PRIMARY KEY, state text)",
                f"INSERT INTO {name} VALUES (1, 'new'), (2, 'paid')",
            )
        ),
    )
    yield url
    next(server, None)


def catalogue(store: CatalogueStore, connection_id: str) -> dict[str, tuple[Status, str | None]]:
    return {d.table_name: (d.status, d.description) for d in store.list_descriptions(connection_id)}


@pytest.fixture
def catalogued(store: CatalogueStore, source: str, settings: Settings) -> str:
    """The source registered, refreshed, `orders` described by a person; then the source
    changes: `legacy` is dropped and `invoices` added."""
    connection_id = store.add_connection(alias="shop", connection_uri=source).id
    runs.refresh(connection_id, trigger="cli", settings=settings)
    orders = next(d for d in store.list_descriptions(connection_id) if d.table_name == "orders")
    store.update_description(orders.id, {"description": "one row per order"})
    execute(source, "DROP TABLE legacy", "CREATE TABLE invoices (id int)")
    return connection_id


CONVERGED = {
    "customers": (Status.NOT_SCANNED, None),
    "invoices": (Status.NOT_SCANNED, None),
    "legacy": (Status.DEPRECATED, None),
    "orders": (Status.NOT_SCANNED, "one row per order"),
}


def test_a_listing_whose_connection_is_dropped_once_is_read_again(
    store: CatalogueStore, source: str, catalogued: str, settings: Settings
):
    database = sa.make_url(source).database
    with BackendKiller(database, listing, times=1) as killer:
        runs.refresh(catalogued, trigger="cli", settings=settings)

    assert len(killer.killed) == 1
    assert catalogue(store, catalogued) == CONVERGED
    assert duplicates(store, catalogued) == []


def test_a_listing_that_keeps_losing_its_connection_writes_nothing_and_a_rerun_converges(
    store: CatalogueStore, source: str, catalogued: str, settings: Settings
):
    database = sa.make_url(source).database
    before = catalogue(store, catalogued)

    with (
        BackendKiller(database, listing, times=2) as killer,
        pytest.raises(InvalidDatabaseConnection) as failed,
    ):
        runs.refresh(catalogued, trigger="cli", settings=settings)
    after_failure = catalogue(store, catalogued)
    runs.refresh(catalogued, trigger="cli", settings=settings)  # the source is back to normal

    assert len(killer.killed) == 2
    assert "server closed the connection" in failed.value.detail["reason"]
    assert after_failure == before  # nothing deprecated, nothing inserted
    assert catalogue(store, catalogued) == CONVERGED
    assert duplicates(store, catalogued) == []


def test_a_scan_whose_connections_drop_rereads_or_fails_only_those_tables_and_a_rescan_converges(
    store: CatalogueStore, source: str, catalogued: str, settings: Settings
):
    database = sa.make_url(source).database
    runs.refresh(catalogued, trigger="cli", settings=settings)

    # Dropped once while sampling `customers` (read again), and twice while sampling `orders`
    # (fails that table alone); then once while reflecting the schema.
    with (
        BackendKiller(database, sampling("customers"), times=1) as once,
        BackendKiller(database, sampling("orders"), times=2) as twice,
        BackendKiller(database, lambda s: "pg_catalog.pg_attribute" in s, times=1) as reflecting,
    ):
        first = runs.scan(catalogued, trigger="cli", settings=settings)
    after_first = {d.table_name: d for d in store.list_descriptions(catalogued)}
    second = runs.scan(catalogued, trigger="cli", settings=settings)
    after_second = {d.table_name: d for d in store.list_descriptions(catalogued)}

    assert (len(once.killed), len(twice.killed), len(reflecting.killed)) == (1, 2, 1)
    assert first["scanned"] == 2 and first["failed"] == 1
    assert after_first["orders"].status == Status.FAILED
    assert "server closed the connection" in after_first["orders"].error_message
    assert after_first["customers"].status == after_first["invoices"].status == Status.SCANNED
    assert second["scanned"] == 3 and second["failed"] == 0
    assert {n: d.status for n, d in after_second.items()} == {
        "customers": Status.SCANNED,
        "invoices": Status.SCANNED,
        "legacy": Status.DEPRECATED,
        "orders": Status.SCANNED,
    }
    assert after_second["orders"].error_message is None
    assert after_second["orders"].description == "one row per order"
    assert [c.name for c in after_second["orders"].columns] == ["id", "state"]
    assert Status.SYNCHRONIZING not in {d.status for d in after_second.values()}
    assert duplicates(store, catalogued) == []
