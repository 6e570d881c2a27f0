"""`tdsync connections add|list|remove`, `refresh`: output, exit codes and clear errors."""

import sqlite3

import dagster as dg
import pytest

from tdsync.config.settings import Settings
from tdsync.defs import runs


@pytest.fixture
def shop(sqlite_path) -> str:
    with sqlite3.connect(sqlite_path) as db:
        db.executescript(
            'CREATE TABLE orders (id INTEGER); CREATE TABLE "Customers" (id INTEGER);'
            "CREATE VIEW big_orders AS SELECT * FROM orders;"
        )
    return f"sqlite:///{sqlite_path}"


def test_add_list_refresh_and_remove_a_connection(tdsync, store, shop, settings: Settings):
    added = tdsync("connections", "add", "shop", shop, "--schedule", "*/30 * * * *")
    listed = tdsync("connections", "list")
    refreshed = tdsync("refresh", "shop")
    # Issue 14: `connections add` lists the tables itself (a refresh run), then `refresh` runs.
    registration, run = runs.instance(settings).get_runs(
        filters=dg.RunsFilter(job_name="refresh_table_descriptions")
    )[::-1]
    removed = tdsync("connections", "remove", "shop")

    assert added.returncode == 0, added.stderr
    conn_id = added.stdout.split("id=")[1].split()[0]
    assert "added shop" in added.stdout
    assert listed.returncode == 0, listed.stderr
    assert conn_id in listed.stdout and "*/30 * * * *" in listed.stdout
    assert refreshed.returncode == 0, refreshed.stderr
    assert registration.status == dg.DagsterRunStatus.SUCCESS
    assert registration.tags["tdsync/trigger"] == "cli"
    for name in ("Customers", "big_orders", "orders"):
        assert name in refreshed.stdout
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["tdsync/trigger"] == "cli"
    assert run.tags["tdsync/db_connection_id"] == conn_id
    assert removed.returncode == 0, removed.stderr
    assert store.list_connections() == []
    assert store.list_descriptions(conn_id) == []


def test_add_with_auto_scan_and_a_scan_schedule(tdsync, store, shop):
    added = tdsync(
        "connections", "add", "shop", shop, "--auto-scan", "--scan-schedule", "0 2 * * *"
    )

    assert added.returncode == 0, added.stderr
    (conn,) = store.list_connections()
    assert (conn.auto_scan, conn.scan_schedule) == (True, "0 2 * * *")


def test_password_never_shows_in_cli_output(tdsync, store, pg_url):
    with_password = pg_url.replace("postgres@", "postgres:s3cret-pw@")

    added = tdsync("connections", "add", "warehouse", with_password)
    listed = tdsync("connections", "list")

    assert added.returncode == 0, added.stderr
    assert "*****" in listed.stdout
    for out in (added.stdout, added.stderr, listed.stdout, listed.stderr):
        assert "s3cret-pw" not in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("refresh", "nope"), "database_connection_not_found", "'nope' not found"),
        (
            ("connections", "add", "x", "sqlite:////no/such/file.db"),
            "invalid_database_connection",
            "does not exist",
        ),
        (
            ("connections", "add", "x", "SHOP", "--schedule", "every hour"),
            "validation_error",
            "invalid refresh_schedule",
        ),
        (
            ("connections", "add", "x", "SHOP", "--scan-schedule", "every hour"),
            "validation_error",
            "invalid scan_schedule",
        ),
        (("connections", "remove", "nope"), "database_connection_not_found", "not found"),
    ],
)
def test_errors_are_one_clear_line_with_their_code_and_no_traceback(
    tdsync, store, shop, args, code, message
):
    args = tuple(shop if a == "SHOP" else a for a in args)

    result = tdsync(*args)

    assert result.returncode == 1
    assert f"[{code}]" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_duplicate_alias_is_refused(tdsync, store, shop):
    assert tdsync("connections", "add", "shop", shop).returncode == 0

    again = tdsync("connections", "add", "shop", shop)

    assert again.returncode == 1
    assert "[duplicate_alias]" in again.stderr
    assert len(store.list_connections()) == 1


def test_an_alias_is_normalised_before_the_uniqueness_check(tdsync, store, shop):
    assert tdsync("connections", "add", " caf\u00e9 ", shop).returncode == 0

    full_width = tdsync("connections", "add", "\uff43\uff41\uff46e\u0301", shop)  # ｃａｆé
    invisible = tdsync("connections", "add", "caf\u00e9\u200b", shop)  # a zero-width space

    assert [c.alias for c in store.list_connections()] == ["caf\u00e9"]
    assert full_width.returncode == 1 and "[duplicate_alias]" in full_width.stderr
    assert invisible.returncode == 1 and "[validation_error]" in invisible.stderr
    assert "U+200B" in invisible.stderr
    assert tdsync("refresh", "\uff43\uff41\uff46\u00e9").returncode == 0  # found by a look-alike


def test_scan_refreshes_a_new_connection_first_then_scans_every_table(tdsync, store, shop):
    conn = store.add_connection(alias="shop", connection_uri=shop)

    result = tdsync("scan", "shop")

    assert result.returncode == 0, result.stderr
    assert "scanned 3 of 3 table(s), 0 failed" in result.stdout
    assert {d.table_name: d.status.value for d in store.list_descriptions(conn.id)} == {
        "Customers": "SCANNED",
        "big_orders": "SCANNED",
        "orders": "SCANNED",
    }


def test_scan_without_data_records_structure_and_reads_no_rows(tdsync, store, sqlite_path):
    with sqlite3.connect(sqlite_path) as db:
        db.executescript(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, state TEXT);"
            "INSERT INTO orders VALUES (1, 'open'), (2, 'shipped');"
        )
    conn = store.add_connection(alias="shop", connection_uri=f"sqlite:///{sqlite_path}")

    result = tdsync("scan", "shop", "--no-data")

    assert result.returncode == 0, result.stderr
    assert "scanned 1 of 1 table(s), 0 failed" in result.stdout
    (orders,) = store.list_descriptions(conn.id)
    assert orders.status.value == "SCANNED" and "CREATE TABLE orders" in orders.table_schema
    assert [(c.name, c.is_primary_key) for c in orders.columns] == [("id", True), ("state", False)]
    assert orders.examples == [] and orders.columns[1].categories is None


def test_scan_of_named_tables_only_scans_those(tdsync, store, shop, settings: Settings):
    conn = store.add_connection(alias="shop", connection_uri=shop)
    runs.refresh(conn.id, trigger="cli", settings=settings)

    result = tdsync("scan", "shop", "--table", "orders")
    unknown = tdsync("scan", "shop", "--table", "nope")

    assert result.returncode == 0, result.stderr
    assert "scanned 1 of 1 table(s)" in result.stdout
    statuses = {d.table_name: d.status.value for d in store.list_descriptions(conn.id)}
    assert statuses == {
        "Customers": "NOT_SCANNED",
        "big_orders": "NOT_SCANNED",
        "orders": "SCANNED",
    }
    assert unknown.returncode == 1
    assert "[table_description_not_found]" in unknown.stderr
