"""The low-cardinality probe never reads a big table without a bound."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tdsync.config.settings import Settings
from tdsync.domain.models import TableType
from tdsync.domain.scan_model import ScanOptions, ScanTarget, TableScan
from tdsync.sources.scanner import scan_tables
from tdsync_tests.test_scan.conftest import run_statements

MILLION = 1_000_000


@pytest.fixture(scope="module")
def big_pg(sources_of) -> str:
    """One million rows (one statement), never analysed; a copy of 200,000 rows, analysed."""
    uri = sources_of("postgresql").empty()
    run_statements(
        uri,
        [
            # autovacuum off: it would analyse the table at a moment the test does not control.
            "CREATE TABLE big (id integer PRIMARY KEY, status text, code integer, label text) "
            "WITH (autovacuum_enabled = false)",
            f"INSERT INTO big SELECT g, (ARRAY['new', 'paid', 'shipped'])[g % 3 + 1], g % 7, "
            f"'label ' || g FROM generate_series(1, {MILLION}) g",
            "CREATE TABLE big_analysed WITH (autovacuum_enabled = false) AS "
            "SELECT * FROM big WHERE id <= 200000",
            "ANALYZE big_analysed",
        ],
    )
    return uri


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine of this process sends while the test runs."""
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    yield sent
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def scan_one(uri: str, table: str, *, settings: Settings, **options) -> TableScan:
    target = ScanTarget(table, "c", "public", table, TableType.TABLE)
    (result,) = scan_tables(uri, [target], options=ScanOptions(**options), settings=settings)
    return result


def reading(statements: list[str], table: str) -> list[str]:
    """The statements that read rows of `table` (not the catalogue's)."""
    return [s for s in statements if re.search(rf"\bFROM {table}\b", s) and "pg_catalog" not in s]


def test_unanalysed_million_rows_are_read_through_a_row_limit_only(
    big_pg, statements, source_settings: Settings
) -> None:
    result = scan_one(big_pg, "big", settings=source_settings)
    assert result.ok, result.error
    reads = reading(statements, "big")
    assert reads and all("LIMIT" in s for s in reads), reads
    # Examples and the sample are bounded by rows; only the candidates the sample could not
    # settle are confirmed with DISTINCT ... LIMIT 101, under the statement timeout.
    sample = [s for s in reads if "DISTINCT" not in s]
    assert len(sample) == 2
    distinct = [s for s in reads if "DISTINCT" in s]
    assert len(distinct) == 2 and all("LIMIT %(param_1)s" in s for s in distinct)
    cols = {c.name: c for c in result.columns}
    assert cols["status"].categories == ["new", "paid", "shipped"]
    assert cols["code"].categories == [str(n) for n in range(7)]
    assert not cols["label"].low_cardinality  # 10,000 distinct values in the sample alone
    assert not cols["id"].low_cardinality


def test_analysed_table_is_judged_from_pg_stats_without_sampling_it(
    big_pg, statements, source_settings: Settings
) -> None:
    result = scan_one(big_pg, "big_analysed", settings=source_settings)
    assert result.ok, result.error
    reads = reading(statements, "big_analysed")
    assert len(reads) == 1 and "LIMIT" in reads[0]  # the three example rows, nothing else
    assert any("pg_stats" in s for s in statements)
    cols = {c.name: c for c in result.columns}
    assert cols["status"].categories == ["new", "paid", "shipped"]
    assert cols["code"].categories == [str(n) for n in range(7)]
    assert not cols["label"].low_cardinality


def test_a_distinct_probe_that_runs_too_long_is_cut_by_the_statement_timeout(
    big_pg, source_settings: Settings
) -> None:
    # Each row of this view costs 1 ms: the 100-row sample is quick, a DISTINCT over all of it
    # would take 100 s. The statement timeout (1 s) stops it; the table is still scanned.
    run_statements(
        big_pg,
        [
            "CREATE VIEW slow AS SELECT (g % 3)::text AS status FROM generate_series(1, 100000) g "
            "WHERE pg_sleep(0.001) IS NOT NULL"
        ],
    )
    target = ScanTarget("slow", "c", "public", "slow", TableType.VIEW)
    (result,) = scan_tables(
        big_pg,
        [target],
        options=ScanOptions(sample_rows=100, example_rows=1),
        timeout_s=1,
        settings=source_settings,
    )
    assert result.ok, result.error
    assert result.columns[0].categories is None  # not confirmed: no guess
    assert any("statement timeout" in note for note in result.notes)


def test_sqlite_statements_are_cut_by_the_timeout_too(tmp_path, source_settings: Settings) -> None:
    path = tmp_path / "slow.db"
    run_statements(
        f"sqlite:///{path}",
        [
            "CREATE VIEW slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "LIMIT 100000000) SELECT CAST(x % 3 AS INTEGER) AS status FROM c"
        ],
    )
    target = ScanTarget("slow", "c", "main", "slow", TableType.VIEW)
    (result,) = scan_tables(
        f"sqlite:///{path}",
        [target],
        options=ScanOptions(sample_rows=100),
        timeout_s=1,
        settings=source_settings,
    )
    assert result.ok, result.error
    assert result.columns[0].categories is None
    assert any("statement timeout" in note for note in result.notes)
