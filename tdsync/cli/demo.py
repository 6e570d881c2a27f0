"""Shell (CLI): `tdsync demo`: a small shop database, registered, refreshed, changed and refreshed again."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from pymongo import monitoring
from rich.console import Console
from rich.table import Table

from tdsync.cli.refresh import SUMMARY_LINE
from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.errors import ConnectionNotFound
from tdsync.domain.models import Status
from tdsync.sources.engine import DEMO_FOLDER
from tdsync.store import CatalogueStore
from tdsync.store.client import shared_store

ALIAS = "demo-shop"

SHOP_SQL = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    full_name TEXT NOT NULL,
    country TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    ordered_at TEXT NOT NULL
);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE "ProductReviews" (
    id INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL REFERENCES products(id),
    rating INTEGER NOT NULL,
    body TEXT
);
CREATE VIEW order_totals AS
    SELECT o.id AS order_id, o.customer_id, SUM(i.quantity * i.unit_price_cents) AS total_cents
    FROM orders o JOIN order_items i ON i.order_id = o.id
    GROUP BY o.id, o.customer_id;
"""

ORDER_ITEMS_SQL = SHOP_SQL.split("CREATE TABLE order_items")[1].split(";")[0]


def build_shop(path: Path) -> None:
    """A realistic small shop with keys, a view and a mixed-case table name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(SHOP_SQL)
        countries = ["DE", "FR", "US", "JP", "BR"]
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
            [
                (i, f"user{i}@example.com", f"Customer {i}", countries[i % 5], "2026-01-01")
                for i in range(1, 51)
            ],
        )
        categories = ["books", "games", "garden", "kitchen"]
        db.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?)",
            [
                (i, f"SKU-{i:04}", f"Product {i}", categories[i % 4], 500 + i * 37)
                for i in range(1, 31)
            ],
        )
        statuses = ["pending", "paid", "shipped", "cancelled"]
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [(i, 1 + i % 50, statuses[i % 4], "2026-03-01") for i in range(1, 201)],
        )
        db.executemany(
            "INSERT INTO order_items VALUES (?, ?, ?, ?)",
            [(o, 1 + (o + 7 * k) % 30, k, 500 + k * 10) for o in range(1, 201) for k in (1, 2)],
        )


class _RoundTrips(monitoring.CommandListener):
    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def run_demo(settings: Settings, console: Console | None = None) -> None:
    console = console or Console()
    trips = _RoundTrips()
    monitoring.register(trips)  # before the store's client exists, so it sees every command
    store = shared_store(settings)
    db_path = settings.home / DEMO_FOLDER / "shop.db"

    console.rule("[bold]1. A shop database, registered and refreshed")
    build_shop(db_path)
    with contextlib.suppress(ConnectionNotFound):
        store.delete_connection(ALIAS)
    conn = store.add_connection(alias=ALIAS, connection_uri=f"sqlite:///{db_path}")
    console.print(f"registered [cyan]{conn.alias}[/] ({conn.connection_uri}) as {conn.id}")
    _refresh(console, store, conn.id, trips, settings)

    items = store.list_descriptions(conn.id, table_name="order_items")[0]
    store.update_description(
        items.id,
        {"description": "One line per product in an order; the price is frozen at order time."},
    )
    console.print("a person described [cyan]order_items[/]")

    console.rule("[bold]2. order_items dropped, shipments added")
    with sqlite3.connect(db_path) as db:
        db.executescript(
            "DROP VIEW order_totals; DROP TABLE order_items;"
            "CREATE TABLE shipments (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders(id),"
            " carrier TEXT, shipped_at TEXT);"
        )
    _refresh(console, store, conn.id, trips, settings)

    console.rule("[bold]3. order_items re-created: restored with its description")
    with sqlite3.connect(db_path) as db:
        db.executescript("CREATE TABLE order_items" + ORDER_ITEMS_SQL + ";")
    _refresh(console, store, conn.id, trips, settings)
    console.print(
        f"Runs are recorded on the Dagster instance at {settings.dagster_home}; "
        f"`TDSYNC_HOME={settings.home} tdsync dev` shows them in the Dagster UI.",
        soft_wrap=True,
    )


def _refresh(
    console: Console,
    store: CatalogueStore,
    connection_id: str,
    trips: _RoundTrips,
    settings: Settings,
) -> None:
    before, started = trips.count, time.perf_counter()
    with console.status("refreshing through the refresh_table_descriptions job…"):
        summary = runs.refresh(connection_id, trigger="cli", settings=settings)
    elapsed = time.perf_counter() - started
    console.print(
        f"refresh: {elapsed:.2f} s, {trips.count - before} store round trips; "
        + ", ".join(f"{k} {summary[k]}" for k in SUMMARY_LINE if k in summary)
    )
    print_catalogue(console, store, connection_id)


STATUS_STYLE = {
    Status.NOT_SCANNED: "yellow",
    Status.DEPRECATED: "red",
    Status.SCANNED: "green",
    Status.FAILED: "bold red",
    Status.SYNCHRONIZING: "blue",
}


def print_catalogue(console: Console, store: CatalogueStore, connection_id: str) -> None:
    table = Table(show_lines=False)
    for column in ("schema", "table", "type", "status", "description"):
        table.add_column(column)
    for desc in store.list_descriptions(connection_id):
        style = STATUS_STYLE.get(desc.status, "")
        table.add_row(
            desc.schema_name,
            desc.table_name,
            desc.table_type.value,
            f"[{style}]{desc.status.value}[/]",
            desc.description or "",
        )
    console.print(table)
