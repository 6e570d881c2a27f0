"""The scan on PostgreSQL, MariaDB, SQLite and DuckDB: keys, types, categories, examples, DDL."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tdsync.config.settings import Settings
from tdsync.domain.models import ForeignKey
from tdsync.domain.scan_model import ScanOptions, TableScan
from tdsync.sources.scanner import scan_tables
from tdsync_tests.test_scan.conftest import (
    DIALECTS,
    HOSTILE_TABLE,
    PG_PREREQUISITES,
    Sources,
    live_targets,
)


@pytest.fixture(scope="module", params=DIALECTS)
def scanned(request, sources_of, source_settings: Settings) -> tuple[Sources, dict[str, TableScan]]:
    """The shop of one dialect, scanned once: {table name: result}."""
    sources = sources_of(request.param)
    uri, schemas = sources.shop()
    results = list(
        scan_tables(
            uri, live_targets(uri, schemas, settings=source_settings), settings=source_settings
        )
    )
    return sources, {r.target.table_name: r for r in results}


def columns(result: TableScan) -> dict:
    return {c.name: c for c in result.columns}


def test_every_table_and_view_is_scanned(scanned) -> None:
    sources, results = scanned
    expected = {"customers", "orders", "order_lines", HOSTILE_TABLE, "active_customers"}
    if sources.dialect == "postgresql":
        expected |= {"order_totals", "leads"}
    assert set(results) == expected
    assert {name: r.error for name, r in results.items() if not r.ok} == {}
    assert all(r.table_schema for r in results.values())


def test_composite_primary_and_foreign_keys_are_filled(scanned) -> None:
    _, results = scanned
    lines = columns(results["order_lines"])
    assert [n for n, c in lines.items() if c.is_primary_key] == ["customer_id", "order_no", "line"]
    assert lines["customer_id"].foreign_key == ForeignKey(
        field_name="customer_id", reference_table="orders"
    )
    assert lines["order_no"].foreign_key == ForeignKey(
        field_name="order_no", reference_table="orders"
    )
    assert lines["sku"].foreign_key is None and not lines["sku"].is_primary_key
    orders = columns(results["orders"])
    assert orders["customer_id"].foreign_key == ForeignKey(
        field_name="id", reference_table="customers"
    )
    assert orders["customer_id"].is_primary_key and orders["order_no"].is_primary_key
    assert not orders["customer_id"].nullable and orders["amount"].nullable
    if "leads" in results:  # PostgreSQL: a key into another schema names that schema
        assert columns(results["leads"])["customer_id"].foreign_key == ForeignKey(
            field_name="id", reference_table="public.customers"
        )


def test_every_column_has_the_dialects_type_name(scanned) -> None:
    _, results = scanned
    customers = columns(results["customers"])
    assert list(customers) == [
        "id",
        "name",
        "status",
        "tier",
        "notes",
        "password",
        "profile",
        "avatar",
        "created_at",
    ]
    assert "INT" in customers["id"].data_type.upper()
    assert "CHAR" in customers["name"].data_type.upper()
    assert all(c.data_type for r in results.values() for c in r.columns if c.name != "legacy")
    assert not customers["name"].nullable and customers["notes"].nullable


def test_enum_like_columns_get_their_categories_as_strings(scanned) -> None:
    _, results = scanned
    customers = columns(results["customers"])
    assert customers["status"].low_cardinality
    assert customers["status"].categories == ["active", "inactive"]  # NULL is not a category
    assert customers["tier"].categories == ["1", "2", "3"]
    assert columns(results["orders"])["state"].categories == ["new", "paid", "shipped"]


def test_json_binary_long_text_and_secret_columns_get_no_categories(scanned) -> None:
    _, results = scanned
    customers = columns(results["customers"])
    for name in ("profile", "avatar", "notes", "password", "created_at", "id"):
        assert not customers[name].low_cardinality, name
        assert customers[name].categories is None, name


def test_examples_are_json_safe_truncated_and_secrets_masked(scanned) -> None:
    _, results = scanned
    examples = results["customers"].examples
    assert len(examples) == 3
    json.dumps(examples)  # plain JSON, nothing exotic left
    by_id = {row["id"]: row for row in examples}
    assert by_id[1]["password"] == "*****" and by_id[2]["password"] == "*****"
    assert by_id[1]["notes"] is None  # NULL stays null
    assert by_id[2]["notes"] == "x" * 100 + "…"
    assert by_id[1]["avatar"] == "<binary, 2 bytes>"
    assert "2024-01-02" in by_id[1]["created_at"]
    assert "hunter2" not in json.dumps([r.examples for r in results.values()])


def test_hostile_names_are_scanned_and_quoted_in_the_ddl(scanned) -> None:
    sources, results = scanned
    hostile = results[HOSTILE_TABLE]
    assert [c.name for c in hostile.columns][:4] == [
        "col with space",
        '"quoted"',
        "ünï",
        "semi;colon",
    ]
    assert {r["col with space"] for r in hostile.examples} == {"a b", None}
    assert columns(hostile)["ünï"].categories == ["ü"]


def test_view_ddl_is_a_create_view_with_its_definition(scanned) -> None:
    _, results = scanned
    ddl = results["active_customers"].table_schema
    assert ddl.upper().startswith("CREATE VIEW")
    assert "active" in ddl and "customers" in ddl
    assert [c.name for c in results["active_customers"].columns] == ["id", "name"]


def test_generated_ddl_runs_on_a_fresh_database_of_the_same_dialect(scanned) -> None:
    sources, results = scanned
    fresh = sources.empty()
    engine = sa.create_engine(fresh, isolation_level="AUTOCOMMIT")
    if sources.dialect == "duckdb":
        engine = sa.create_engine(fresh)
    pending = {name: r.table_schema for name, r in results.items()}
    failures: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            if sources.dialect == "postgresql":
                for statement in PG_PREREQUISITES:
                    conn.exec_driver_sql(statement)
            # Tables before the tables and views that refer to them: retry until nothing moves.
            while pending:
                progressed = False
                for name, ddl in list(pending.items()):
                    try:
                        conn.exec_driver_sql(ddl.replace("%", "%%"))
                        if sources.dialect == "duckdb":
                            conn.commit()
                        del pending[name]
                        progressed = True
                    except sa.exc.DBAPIError as exc:
                        if sources.dialect == "duckdb":
                            conn.rollback()
                        failures[name] = str(exc.orig).splitlines()[0]
                if not progressed:
                    break
            created = set(sa.inspect(conn).get_table_names()) | set(
                sa.inspect(conn).get_view_names()
            )
    finally:
        engine.dispose()
    assert pending == {}, {name: failures.get(name) for name in pending}
    assert {"customers", "orders", "order_lines", HOSTILE_TABLE, "active_customers"} <= created


def test_plain_postgresql_ddl_is_the_text_sqlalchemy_compiles(
    sources_of, monkeypatch, source_settings: Settings
) -> None:
    """The scan renders plain PostgreSQL tables itself (for speed): the very text SQLAlchemy's
    CreateTable gives, hostile names and all; other tables still go through SQLAlchemy."""
    from tdsync.sources import ddl

    uri, schemas = sources_of("postgresql").shop()
    targets = live_targets(uri, schemas, settings=source_settings)
    metadata_only = ScanOptions(example_rows=0, max_categories=0)
    plain_rendered = []
    render = ddl._plain_pg_table_ddl

    def counted(*args):
        ddl = render(*args)
        if ddl is not None:
            plain_rendered.append(ddl)
        return ddl

    monkeypatch.setattr(ddl, "_plain_pg_table_ddl", counted)
    fast = {
        r.target.qualified_name: r.table_schema
        for r in scan_tables(uri, targets, options=metadata_only, settings=source_settings)
    }
    monkeypatch.setattr(ddl, "_plain_pg_table_ddl", lambda *args: None)
    compiled = {
        r.target.qualified_name: r.table_schema
        for r in scan_tables(uri, targets, options=metadata_only, settings=source_settings)
    }
    assert fast == compiled
    assert len(plain_rendered) >= 3
    assert any(HOSTILE_TABLE.replace('"', '""') in ddl for ddl in plain_rendered)
