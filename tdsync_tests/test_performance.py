"""What keeps a 10,000-table refresh cheap (issue 6), pinned so that it stays so."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tdsync.cli.scan import NO_DATA_SCAN
from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.defs.bulk import gc_paused
from tdsync.domain.models import Status, TableType
from tdsync.domain.refresh_rules import Listing, LiveTable, StoredTable, plan_refresh
from tdsync.sources.listing import _list_schema, list_live_tables

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _stored(name: str, status: Status, lease: datetime | None = None) -> StoredTable:
    return StoredTable(f"id-{name}", "public", name, TableType.TABLE, status, lease)


def test_plan_counts_statuses_as_they_will_be_after_the_refresh() -> None:
    stored = [
        _stored("kept", Status.SCANNED),
        _stored("gone", Status.NOT_SCANNED),
        _stored("back", Status.DEPRECATED),
        _stored("still_gone", Status.DEPRECATED),
        _stored("stuck", Status.SYNCHRONIZING, NOW - timedelta(seconds=1)),
        _stored("scanning", Status.SYNCHRONIZING, NOW + timedelta(hours=1)),
    ]
    live = [
        LiveTable("public", name, TableType.TABLE)
        for name in ("kept", "back", "stuck", "scanning", "new")
    ]
    plan = plan_refresh(stored, Listing({"public": live}), NOW)

    assert plan.statuses_after == {
        "SCANNED": 1,
        "NOT_SCANNED": 2,  # new, back
        "DEPRECATED": 2,  # gone, still_gone
        "FAILED": 1,  # stuck
        "SYNCHRONIZING": 1,  # scanning
    }


def test_gc_paused_restores_the_collector_even_on_error() -> None:
    assert gc.isenabled()
    try:
        with gc_paused():
            assert not gc.isenabled()
            with gc_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()  # the inner block leaves it paused for the outer one
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.isenabled()


def test_postgresql_listing_takes_one_query_and_matches_the_inspector(
    pg_url: str, source_settings: Settings
) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        for statement in (
            "CREATE SCHEMA perf_a",
            "CREATE SCHEMA perf_empty",
            'CREATE TABLE perf_a."Users" (id int PRIMARY KEY)',
            "CREATE TABLE perf_a.users (id int PRIMARY KEY)",
            "CREATE VIEW perf_a.v AS SELECT 1 AS x",
            "CREATE MATERIALIZED VIEW perf_a.m AS SELECT 1 AS y",
            "CREATE TABLE perf_a.p (id int) PARTITION BY RANGE (id)",
            "CREATE TABLE perf_a.p1 PARTITION OF perf_a.p FOR VALUES FROM (0) TO (10)",
        ):
            conn.execute(sa.text(statement))
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    schemas = ["perf_a", "perf_empty", "perf_missing", "pg_catalog"]
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        listing = list_live_tables(pg_url, schemas, settings=source_settings)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)

    assert len(statements) == 1
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        existing = set(inspector.get_schema_names())
        expected = {
            s: _list_schema(inspector, s, explicit=True) if s in existing else None for s in schemas
        }
    engine.dispose()
    assert listing.schemas == expected
    assert [(t.table_name, t.table_type) for t in listing.schemas["perf_a"]] == [
        ("Users", TableType.TABLE),
        ("m", TableType.MATERIALIZED_VIEW),
        ("p", TableType.TABLE),
        ("p1", TableType.TABLE),
        ("users", TableType.TABLE),
        ("v", TableType.VIEW),
    ]
    assert listing.schemas["perf_empty"] == []
    assert listing.schemas["perf_missing"] is None


def test_a_scan_sends_as_many_source_queries_for_40_tables_as_for_5(
    store, pg_url: str, settings: Settings
) -> None:
    """Reflection is batched per schema: what a metadata scan asks the source does not grow with
    the number of tables (1,000 PostgreSQL tables take 14 queries in `make bench`)."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        for schema, tables in (("perf_scan_5", 5), ("perf_scan_40", 40)):
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
            conn.execute(sa.text(f"CREATE TABLE {schema}.parent (id int PRIMARY KEY)"))
            for i in range(tables - 1):
                conn.execute(
                    sa.text(
                        f"CREATE TABLE {schema}.t{i} (id int PRIMARY KEY, "
                        f"parent_id int REFERENCES {schema}.parent (id), note text)"
                    )
                )
    engine.dispose()
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        if conn.engine.url.get_backend_name() == "postgresql":  # not Dagster's own storage
            statements.append(statement)

    sent = {}
    for schema, tables in (("perf_scan_5", 5), ("perf_scan_40", 40)):
        conn_id = store.add_connection(alias=schema, connection_uri=pg_url, schemas=[schema]).id
        runs.refresh(conn_id, trigger="cli", settings=settings)
        statements.clear()
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
        try:
            summary = runs.scan(conn_id, trigger="cli", options=NO_DATA_SCAN, settings=settings)
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
        assert summary["scanned"] == tables
        sent[tables] = len(statements)
    assert sent[40] == sent[5] <= 10, sent
