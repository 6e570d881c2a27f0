"""Sources layer: scan many tables of one source database: reflect per schema chunk, probe tables
in parallel.

The calling thread reflects one chunk of a schema at a time (a few batch queries) while a small
thread pool samples the tables already reflected, each worker on its own connection, so at most
`concurrency` queries run against the source at once. Results come back as each table finishes;
an error fails only its own table. A source that stops answering altogether (no statement
answered for `stall_s`) ends the scan with SourceStopped instead. Plain Python: the Dagster op,
the CLI and the benchmark use it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tdsync.config.credentials import scrub
from tdsync.config.settings import Settings
from tdsync.domain.errors import TdsyncError
from tdsync.domain.scan_model import ScanOptions, ScanTarget, TableScan
from tdsync.sources.engine import driver_message, once_more_if_disconnected, source_engine
from tdsync.sources.fingerprints import read_fingerprints
from tdsync.sources.reflect import reflect_tables
from tdsync.sources.reflected import ReflectedTable, TableNotFound, end_transaction
from tdsync.sources.sample import Sample, TableStats, catalogue_stats, sample_table
from tdsync.sources.source_watch import source_watch

SINGLE_CONNECTION_DIALECTS = {"duckdb"}  # one writer-capable connection per file and process
REFLECT_ATTEMPTS = 3  # reflections of a table whose structure changes under the scan


class TableChanging(RuntimeError):
    """The table's structure changed under every attempt to reflect it."""


def scan_tables(
    connection_uri: str,
    targets: list[ScanTarget],
    *,
    options: ScanOptions | None = None,
    timeout_s: float = 10.0,
    stall_s: float | None = None,
    ssh: dict[str, Any] | None = None,
    settings: Settings,
) -> Iterator[TableScan]:
    """One TableScan per target, in completion order. Raises InvalidDatabaseConnection only
    when the source cannot be reached at all, SourceStopped when it stops answering for
    `stall_s` (PostgreSQL; the other dialects' drivers bound every read themselves)."""
    options = options or ScanOptions()
    if not targets:
        return
    with source_engine(connection_uri, timeout_s=timeout_s, ssh=ssh, settings=settings) as engine:
        watch = source_watch(engine)
        if watch is not None:
            watch.stall_s = stall_s
        connections = _ThreadConnections(engine)
        workers = 1 if engine.dialect.name in SINGLE_CONNECTION_DIALECTS else options.concurrency
        pool = ThreadPoolExecutor(max(1, workers - 1), thread_name_prefix="tdsync-scan")
        pending: set[Future[TableScan]] = set()
        reads_data = options.example_rows > 0 or options.max_categories > 0
        try:
            default_schema = sa.inspect(connections.get()).default_schema_name
            for schema_name, chunk in _chunks(targets, options.reflect_chunk):
                schema = None if schema_name == default_schema else schema_name
                conn = connections.get()
                reflected, fingerprints = _reflect_steadily(conn, schema_name, schema, chunk)
                stats = _stats(conn, schema, chunk) if options.max_categories > 0 else {}
                end_transaction(conn)
                for target in chunk:
                    found = reflected[target.table_name]
                    if isinstance(found, Exception):
                        yield TableScan(target, error=_message(found, connection_uri))
                        continue
                    found.fingerprint = fingerprints.get(target.table_name)
                    args = (connections, schema, target, found, stats.get(target.table_name))
                    if not reads_data:
                        yield _result(target, found, Sample())
                    elif workers <= 1:
                        yield _sample(*args, options, connection_uri)
                    else:
                        pending.add(pool.submit(_sample, *args, options, connection_uri))
                done = {f for f in pending if f.done()}
                pending -= done
                yield from (f.result() for f in done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                if watch is not None and watch.silent_for is not None:
                    raise watch.stopped()  # what is left waited on a source that is gone
                yield from (f.result() for f in done)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            connections.close_all()


def _reflect_steadily(
    conn: Connection, schema_name: str, schema: str | None, chunk: list[ScanTarget]
) -> tuple[dict[str, ReflectedTable | Exception], dict[str, str]]:
    """Reflect a chunk, with each table's fingerprint read before and after: a table whose
    structure changed meanwhile is reflected again, so no table is recorded half old, half new."""
    kinds = {t.table_name: t.table_type for t in chunk}
    before = _fingerprints(conn, schema_name, kinds)
    reflected = reflect_tables(conn, schema, kinds)
    for _ in range(REFLECT_ATTEMPTS):
        after = _fingerprints(conn, schema_name, kinds)
        moved = {n: k for n, k in kinds.items() if before.get(n) != after.get(n)}
        if not moved:
            return reflected, after
        reflected.update(reflect_tables(conn, schema, moved))
        before, kinds = after, moved
    for name in kinds:
        reflected[name] = TableChanging(f"{name!r} kept changing structure while it was scanned")
    return reflected, after


def _fingerprints(conn: Connection, schema_name: str, kinds: dict[str, Any]) -> dict[str, str]:
    found = read_fingerprints(conn, {schema_name: set(kinds)})
    end_transaction(conn)
    return {name: fp for (_, name), fp in found.items()}


def _sample(
    connections: _ThreadConnections,
    schema: str | None,
    target: ScanTarget,
    reflected: ReflectedTable,
    stats: TableStats | None,
    options: ScanOptions,
    connection_uri: str,
) -> TableScan:
    def read() -> Sample:
        conn = connections.get()
        try:
            sample = sample_table(conn, schema, target.table_name, reflected, stats, options)
            end_transaction(conn)
        except Exception:
            connections.discard()  # it may be broken; the next read gets a fresh one
            raise
        return sample

    try:
        sample = once_more_if_disconnected(read)
    except Exception as exc:
        return TableScan(target, error=_message(exc, connection_uri))
    return _result(target, reflected, sample)


def _result(target: ScanTarget, reflected: ReflectedTable, sample: Sample) -> TableScan:
    if not sample.categories:
        # Reflected columns carry no categories: nothing to copy them for (10,000 tables of a
        # metadata scan are 80,000 model copies).
        columns = list(reflected.columns)
    else:
        columns = [
            c.model_copy(
                update={
                    "low_cardinality": c.name in sample.categories,
                    "categories": sample.categories.get(c.name),
                }
            )
            for c in reflected.columns
        ]
    return TableScan(
        target,
        fingerprint=reflected.fingerprint,
        columns=columns,
        table_schema=reflected.ddl,
        examples=sample.examples,
        notes=sample.notes,
    )


def _stats(conn: Connection, schema: str | None, chunk: list[ScanTarget]) -> dict[str, TableStats]:
    """Catalogue statistics when readable; without them every candidate is sampled instead."""
    try:
        return catalogue_stats(conn, schema, [t.table_name for t in chunk])
    except sa.exc.DBAPIError:
        end_transaction(conn)
        return {}


def _message(exc: BaseException, connection_uri: str) -> str:
    if isinstance(exc, TableNotFound | TableChanging):
        return str(exc)
    if isinstance(exc, TdsyncError):  # worded already (SourceStopped)
        return exc.message
    if isinstance(exc, sa.exc.DBAPIError):
        return f"cannot read the table: {driver_message(exc, connection_uri)}"
    first = (str(exc).strip().splitlines() or [""])[0]
    # Scrubbed whole, then cut: a password across the cut would survive in part otherwise.
    return scrub(f"cannot describe the table: {type(exc).__name__}: {first}", connection_uri)[:500]


def _chunks(targets: list[ScanTarget], size: int) -> Iterator[tuple[str, list[ScanTarget]]]:
    ordered = sorted(targets, key=lambda t: (t.schema_name, t.table_name))
    for schema, group in groupby(ordered, key=lambda t: t.schema_name):
        tables = list(group)
        for start in range(0, len(tables), max(1, size)):
            yield schema, tables[start : start + size]


class _ThreadConnections:
    """One connection per thread, opened on first use, all closed at the end."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Connection] = []

    def get(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._engine.connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close_all(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
