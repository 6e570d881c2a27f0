"""A source that goes silent: a proxy in front of it keeps the connections open but relays nothing.

No refresh or scan waits for it forever. A statement without any answer is cut off on the client
side after twice the source timeout; a scan whose source answers nothing for TDSYNC_SCAN_STALL_S
gives up: its unscanned rows become FAILED saying so, its leases are released, and the next
refresh of the connection (once the source answers again) succeeds at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg2
import pytest
import sqlalchemy as sa

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.errors import InvalidDatabaseConnection
from tdsync.domain.models import Status
from tdsync.sources.engine import create_source_engine
from tdsync.sources.listing import list_live_tables
from tdsync.sources.timeouts import answer_deadline_s
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import PG_ADMIN_URL, _server_database, execute, until
from tdsync_tests.test_reliability.proxy import SilentProxy

TIMEOUT_S = 1  # TDSYNC_SOURCE_TIMEOUT_S: statements are cut off after answer_deadline_s = 2 s
STALL_S = 3  # TDSYNC_SCAN_STALL_S
TABLES = 120
SILENT_AT = "t_060"  # the proxy goes silent when the scan samples this table


@pytest.fixture
def source() -> Iterator[str]:
    server = _server_database(PG_ADMIN_URL, "PostgreSQL at 127.0.0.1:5432")
    url = next(server)
    execute(
        url,
        *(
            statement
            for i in range(TABLES)
            for statement in (
                f"CREATE TABLE t_{i:03d} (id int PRIMARY KEY, state text)",
                f"INSERT INTO t_{i:03d} VALUES (1, 'new'), (2, 'paid')",
            )
        ),
    )
    yield url
    next(server, None)


@pytest.fixture
def proxy(source: str) -> Iterator[SilentProxy]:
    server = SilentProxy(sa.make_url(source).port or 5432)
    yield server
    server.close()


def through(proxy: SilentProxy, source: str) -> str:
    url = sa.make_url(source).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def quick_timeouts(tdsync_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDSYNC_SOURCE_TIMEOUT_S", str(TIMEOUT_S))
    monkeypatch.setenv("TDSYNC_SCAN_STALL_S", str(STALL_S))


def test_postgresql_connections_carry_keepalives_and_a_tcp_user_timeout(
    source: str, source_settings: Settings
):
    engine = create_source_engine(source, timeout_s=10, settings=source_settings)
    try:
        with engine.connect() as conn:
            dbapi_conn = conn.connection.dbapi_connection
            assert isinstance(dbapi_conn, psycopg2.extensions.connection)
            params = dbapi_conn.get_dsn_parameters()
    finally:
        engine.dispose()
    assert params["keepalives"] == "1"
    assert (params["keepalives_idle"], params["keepalives_count"]) == ("10", "3")
    assert params["tcp_user_timeout"] == "20000"  # ms: the client's answer deadline


def test_a_listing_that_gets_no_answer_is_cut_off_within_the_answer_deadline(
    source: str, proxy: SilentProxy, source_settings: Settings
):
    proxy.silent_on = b"pg_namespace"  # connects and logs in, then the listing gets nothing
    started = time.monotonic()
    with pytest.raises(InvalidDatabaseConnection) as failed:
        list_live_tables(
            through(proxy, source), None, timeout_s=TIMEOUT_S, settings=source_settings
        )
    waited = time.monotonic() - started

    assert proxy.silent_since is not None
    assert failed.value.message == f"the source did not answer for {answer_deadline_s(1):.0f} s"
    assert waited < answer_deadline_s(TIMEOUT_S) + 2


def test_a_mariadb_read_that_gets_no_answer_raises_within_the_source_timeout(
    mysql_url: str, source_settings: Settings
):
    proxy = SilentProxy(sa.make_url(mysql_url).port or 3306, silent_on=b"SHOW FULL TABLES")
    try:
        started = time.monotonic()
        with pytest.raises(InvalidDatabaseConnection) as failed:
            list_live_tables(
                through(proxy, mysql_url), None, timeout_s=TIMEOUT_S, settings=source_settings
            )
        waited = time.monotonic() - started
    finally:
        proxy.close()
    assert proxy.silent_since is None  # relay_again() on close
    assert "Lost connection" in failed.value.detail["reason"]
    assert waited < TIMEOUT_S * 2 + 2  # pymysql's read_timeout, once retried on a new connection


def test_a_scan_whose_source_goes_silent_fails_its_rows_within_the_stall_limit_and_frees_the_connection(
    store: CatalogueStore, source: str, proxy: SilentProxy, quick_timeouts: None, settings: Settings
):
    connection_id = store.add_connection(alias="quiet", connection_uri=through(proxy, source)).id
    runs.refresh(connection_id, trigger="cli", settings=settings)
    proxy.silent_on = f"\nFROM {SILENT_AT}".encode()  # mid-scan, while sampling that table

    outcome: dict[str, BaseException] = {}

    def scan() -> None:
        try:
            runs.scan(connection_id, trigger="cli", settings=settings)
        except BaseException as exc:  # kept for the assertions below
            outcome["error"] = exc

    scanning = threading.Thread(target=scan)
    scanning.start()
    until(lambda: proxy.silent_since is not None, "the proxy has gone silent mid-scan", 60)

    def settled() -> bool:
        statuses = {d.status for d in store.list_descriptions(connection_id)}
        return Status.SYNCHRONIZING not in statuses

    bound_s = STALL_S + answer_deadline_s(TIMEOUT_S) + 5  # give up, cut off, settle the rows
    until(settled, "no row is SYNCHRONIZING any more", timeout_s=bound_s, poll_s=0.1)
    recovered_s = time.monotonic() - proxy.silent_since
    scanning.join(timeout=30)

    rows = {d.table_name: d for d in store.list_descriptions(connection_id)}
    failed = {name: d.error_message for name, d in rows.items() if d.status == Status.FAILED}
    scanned = [name for name, d in rows.items() if d.status == Status.SCANNED]
    print(f"silent source: rows settled {recovered_s:.1f} s after the proxy went silent")
    assert not scanning.is_alive()
    assert isinstance(outcome.get("error"), InvalidDatabaseConnection)
    assert "the source stopped answering for" in str(outcome["error"])
    assert SILENT_AT in failed and scanned  # tables before the silence keep their scan
    assert len(failed) + len(scanned) == TABLES
    assert all("stopped answering" in e or "did not answer" in e for e in failed.values())
    assert store.connection_lease(connection_id)["holder"] is None

    proxy.relay_again()
    started = time.monotonic()
    runs.refresh(
        connection_id, trigger="cli", settings=settings
    )  # not held up by the silent scan's lease
    assert time.monotonic() - started < 10
    summary = runs.scan(connection_id, trigger="cli", settings=settings)
    assert (summary["scanned"], summary["failed"]) == (TABLES, 0)
