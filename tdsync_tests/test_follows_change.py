"""A catalogue that follows change (issue 17), on real PostgreSQL, MariaDB, SQLite and DuckDB.

A renamed table or view keeps its id and everything people wrote on it; a column renamed between
two scans keeps its description; ambiguous matches and moves across schemas are not renames. A
changed-only scan re-reads only what changed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.sources.fingerprints import fingerprint, fingerprint_tables, read_fingerprints
from tdsync.store import CatalogueStore
from tdsync_tests.test_scan.conftest import DIALECTS, Sources, run_statements

RENAME_VIEW = {
    "postgresql": ["ALTER VIEW big_orders RENAME TO large_orders"],
    "mariadb": ["RENAME TABLE big_orders TO large_orders"],
    "duckdb": ["ALTER VIEW big_orders RENAME TO large_orders"],
    # SQLite cannot rename a view: a view renamed there is dropped and created again.
    "sqlite": [
        "DROP VIEW big_orders",
        "CREATE VIEW large_orders AS SELECT id, total FROM orders WHERE total > 100",
    ],
}


@pytest.fixture(params=DIALECTS)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(dialect, URI) of a fresh source holding `orders`, `customers` and the view `big_orders`."""
    sources = Sources(request.param, tmp_path)
    try:
        uri = sources.empty()
        run_statements(
            uri,
            [
                "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(50))",
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, total DECIMAL(10, 2))",
                "CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100",
            ],
        )
        yield request.param, uri
    finally:
        sources.close()


@pytest.fixture
def shop(store: CatalogueStore, source: tuple[str, str], settings: Settings) -> str:
    connection = store.add_connection(alias="shop", connection_uri=source[1])
    runs.refresh(connection.id, trigger="cli", settings=settings)
    return connection.id


def described(store: CatalogueStore, connection_id: str, table: str, text: str) -> str:
    (row,) = store.list_descriptions(connection_id, table_name=table)
    store.update_description(row.id, {"description": text, "metadata": {"owner": "sales"}})
    return row.id


def names(store: CatalogueStore, connection_id: str) -> dict[str, str]:
    return {d.table_name: d.status.value for d in store.list_descriptions(connection_id)}


def test_renamed_table_keeps_its_id_and_descriptions(
    store: CatalogueStore, source: tuple[str, str], shop: str, settings: Settings
) -> None:
    orders = described(store, shop, "orders", "One row per order.")
    run_statements(source[1], ["ALTER TABLE orders RENAME TO sales_orders"])

    summary = runs.refresh(shop, trigger="cli", settings=settings)
    assert (summary["renamed"], summary["added"], summary["deprecated"]) == (1, 0, 0)
    assert summary["renamed_tables"] == [
        f"{store.get_description(orders).schema_name}.orders -> sales_orders"
    ]
    renamed = store.get_description(orders)
    assert (renamed.table_name, renamed.status.value) == ("sales_orders", "NOT_SCANNED")
    assert (renamed.description, renamed.metadata) == ("One row per order.", {"owner": "sales"})
    assert renamed.schema_changes[-1].renamed_from == "orders"
    assert "orders" not in names(store, shop)


def test_renamed_view_keeps_its_id_and_descriptions(
    store: CatalogueStore, source: tuple[str, str], shop: str, settings: Settings
) -> None:
    view = described(store, shop, "big_orders", "Orders over 100.")
    run_statements(source[1], RENAME_VIEW[source[0]])

    summary = runs.refresh(shop, trigger="cli", settings=settings)
    assert (summary["renamed"], summary["added"], summary["deprecated"]) == (1, 0, 0)
    renamed = store.get_description(view)
    assert (renamed.table_name, renamed.table_type.value) == ("large_orders", "VIEW")
    assert renamed.description == "Orders over 100."


def test_rename_beside_an_unrelated_add_and_drop_in_one_refresh(
    store: CatalogueStore, source: tuple[str, str], shop: str, settings: Settings
) -> None:
    orders = described(store, shop, "orders", "One row per order.")
    customers = described(store, shop, "customers", "People who order.")
    run_statements(
        source[1],
        [
            "DROP VIEW big_orders",
            "ALTER TABLE orders RENAME TO sales_orders",
            "DROP TABLE customers",
            "CREATE TABLE refunds (id INTEGER PRIMARY KEY, reason VARCHAR(200))",
        ],
    )
    summary = runs.refresh(shop, trigger="cli", settings=settings)
    assert (summary["renamed"], summary["added"], summary["deprecated"]) == (1, 1, 2)
    assert names(store, shop) == {
        "big_orders": "DEPRECATED",
        "customers": "DEPRECATED",
        "refunds": "NOT_SCANNED",
        "sales_orders": "NOT_SCANNED",
    }
    assert store.get_description(orders).table_name == "sales_orders"
    assert store.get_description(customers).description == "People who order."


def test_two_tables_of_one_structure_renamed_at_once_are_no_rename(
    store: CatalogueStore, source: tuple[str, str], shop: str, settings: Settings
) -> None:
    run_statements(
        source[1], ["CREATE TABLE orders_copy (id INTEGER PRIMARY KEY, total DECIMAL(10, 2))"]
    )
    runs.refresh(shop, trigger="cli", settings=settings)
    run_statements(
        source[1],
        ["ALTER TABLE orders RENAME TO orders_a", "ALTER TABLE orders_copy RENAME TO orders_b"],
    )
    summary = runs.refresh(shop, trigger="cli", settings=settings)
    assert (summary["renamed"], summary["added"], summary["deprecated"]) == (0, 2, 2)
    assert names(store, shop)["orders"] == "DEPRECATED"


def test_one_table_gone_and_two_new_of_its_structure_is_no_rename(
    store: CatalogueStore, source: tuple[str, str], shop: str, settings: Settings
) -> None:
    run_statements(
        source[1],
        [
            "ALTER TABLE orders RENAME TO orders_a",
            "CREATE TABLE orders_b (id INTEGER PRIMARY KEY, total DECIMAL(10, 2))",
        ],
    )
    summary = runs.refresh(shop, trigger="cli", settings=settings)
    assert (summary["renamed"], summary["added"], summary["deprecated"]) == (0, 2, 1)


def test_renamed_column_keeps_its_description_across_scans(
    store: CatalogueStore, source: tuple[str, str], shop: str, settings: Settings
) -> None:
    runs.scan(shop, trigger="cli", table_names=["orders"], settings=settings)
    (orders,) = store.list_descriptions(shop, table_name="orders")
    store.edit_description(orders.id, fields={}, columns={"total": {"description": "Gross, EUR."}})
    run_statements(source[1], ["ALTER TABLE orders RENAME COLUMN total TO amount"])

    runs.scan(shop, trigger="cli", table_names=["orders"], settings=settings)
    scanned = store.get_description(orders.id)
    assert [c.name for c in scanned.columns] == ["id", "amount"]
    assert scanned.columns[1].description == "Gross, EUR."
    assert scanned.schema_changes[-1].renamed_columns == {"total": "amount"}


def test_table_moved_to_another_schema_is_no_rename(
    store: CatalogueStore, tmp_path: Path, settings: Settings
) -> None:
    sources = Sources("postgresql", tmp_path)
    try:
        uri = sources.empty()
        run_statements(
            uri,
            [
                "CREATE SCHEMA archive",
                "CREATE TABLE public.orders (id INTEGER PRIMARY KEY, total DECIMAL(10, 2))",
                "CREATE TABLE public.customers (id INTEGER PRIMARY KEY)",
                "CREATE TABLE archive.customers_2020 (id INTEGER PRIMARY KEY)",
            ],
        )
        connection = store.add_connection(
            alias="moves", connection_uri=uri, schemas=["public", "archive"]
        )
        runs.refresh(connection.id, trigger="cli", settings=settings)
        run_statements(uri, ["ALTER TABLE public.orders SET SCHEMA archive"])
        summary = runs.refresh(connection.id, trigger="cli", settings=settings)
        assert (summary["renamed"], summary["added"], summary["deprecated"]) == (0, 1, 1)
    finally:
        sources.close()


@contextmanager
def source_statements() -> Iterator[list[str]]:
    """Every statement any engine of this process sends while inside, with its parameters."""
    seen: list[str] = []
    lock = threading.Lock()

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        with lock:
            seen.append(f"{statement} {parameters!r}")

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", before)


def test_changed_only_scan_rereads_the_altered_table_alone(
    store: CatalogueStore, source: tuple[str, str], shop: str, settings: Settings
) -> None:
    with source_statements() as full:
        assert runs.scan(shop, trigger="cli", settings=settings)["scanned"] == 3
    before = {d.table_name: d.last_schema_sync for d in store.list_descriptions(shop)}
    run_statements(source[1], ["ALTER TABLE customers ADD COLUMN email VARCHAR(80)"])

    with source_statements() as changed:
        summary = runs.scan(shop, trigger="cli", options={"changed_only": True}, settings=settings)
    assert (summary["tables"], summary["scanned"]) == (1, 1)
    after = {d.table_name: d for d in store.list_descriptions(shop)}
    assert [c.name for c in after["customers"].columns] == ["id", "name", "email"]
    assert after["customers"].last_schema_sync > before["customers"]
    assert after["orders"].last_schema_sync == before["orders"]
    assert after["big_orders"].last_schema_sync == before["big_orders"]
    # Only the one catalog query that fingerprints the connection's tables names the others.
    touching_orders = [s for s in changed if "orders" in s]
    assert len(touching_orders) == 1, touching_orders
    assert len(changed) < len(full)

    with source_statements() as unchanged:
        summary = runs.scan(shop, trigger="cli", options={"changed_only": True}, settings=settings)
    assert summary["tables"] == 0
    assert len([s for s in unchanged if "customers" in s]) == 1


def test_postgresql_fingerprints_of_several_schemas_come_from_one_catalog_query(
    tmp_path: Path,
    source_settings: Settings,
) -> None:
    sources = Sources("postgresql", tmp_path)
    try:
        uri = sources.empty()
        run_statements(
            uri,
            [
                "CREATE SCHEMA other",
                "CREATE TABLE public.t (id INTEGER, name VARCHAR(20))",
                "CREATE TABLE other.t (id INTEGER)",
                "CREATE TABLE other.bare ()",
                "CREATE VIEW other.v AS SELECT id FROM other.t",
            ],
        )
        asked = [("public", "t"), ("other", "bare"), ("other", "v"), ("other", "gone")]
        with source_statements() as sent:
            named = fingerprint_tables(uri, asked, settings=source_settings)
        assert len([s for s in sent if "pg_class" in s]) == 1
        # other.t shares a name asked in public, but was not asked.
        assert set(named) == {("public", "t"), ("other", "bare"), ("other", "v")}
        assert named[("public", "t")] == fingerprint(
            "table", [["id", "integer"], ["name", "character varying(20)"]]
        )
        assert named[("other", "bare")] == fingerprint("table", [])
        engine = sa.create_engine(uri)
        try:
            with engine.connect() as conn:
                whole = read_fingerprints(conn, {"public": None, "other": None})
        finally:
            engine.dispose()
        assert set(whole) == set(named) | {("other", "t")}
        assert {k: whole[k] for k in named} == named
        assert whole[("other", "t")] == fingerprint("table", [["id", "integer"]])
    finally:
        sources.close()


def test_changed_only_scan_rereads_data_older_than_its_max_age(
    store: CatalogueStore, source: tuple[str, str], shop: str, settings: Settings
) -> None:
    runs.scan(shop, trigger="cli", settings=settings)
    summary = runs.scan(
        shop, trigger="cli", options={"changed_only": True, "data_max_age_s": 0}, settings=settings
    )
    assert summary["tables"] == 3
