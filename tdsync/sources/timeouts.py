"""Sources layer: connect and statement timeouts, per dialect.

PostgreSQL gets `statement_timeout` and keepalives from its connect options, and SourceWatch bounds
waiting for its answers; MySQL/MariaDB, SQLite and DuckDB are bounded by the event listeners here,
so a scan's probe of a huge table is cut off on every dialect alike.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tdsync.sources.source_watch import watch_answers


def answer_deadline_s(timeout_s: float) -> float:
    """How long a client waits for any answer to a statement: twice the statement timeout the
    server enforces itself, so only a source that cannot answer at all is cut off."""
    return 2 * max(1, int(round(timeout_s)))


def connect_timeout_args(backend: str, driver: str, timeout_s: float) -> dict[str, Any]:
    """The driver's own connect options that bound connecting, reading and each statement."""
    seconds = max(1, int(round(timeout_s)))
    if backend == "postgresql":
        return {
            "connect_timeout": seconds,
            "options": f"-c statement_timeout={seconds * 1000}",
            # A peer gone from the network (a host down, a partition): keepalive probes find an
            # idle connection dead within idle + interval * count = 2 x the timeout, and
            # tcp_user_timeout (ms) drops one whose sent data stays unacknowledged for as long.
            # A peer that keeps the connection but sends nothing is SourceWatch's to cut.
            "keepalives": 1,
            "keepalives_idle": seconds,
            "keepalives_interval": max(1, seconds // 3),
            "keepalives_count": 3,
            "tcp_user_timeout": answer_deadline_s(timeout_s) * 1000,
        }
    if backend in ("mysql", "mariadb") and driver in ("pymysql", "mysqldb", ""):
        # pymysql's own socket timeouts: a read or write that stalls raises within `seconds`.
        return {"connect_timeout": seconds, "read_timeout": seconds, "write_timeout": seconds}
    if backend == "sqlite":
        return {"timeout": timeout_s}
    return {}


def bound_statements(engine: Engine, timeout_s: float) -> None:
    """Cancel any statement of this engine that runs longer than `timeout_s` (server side)."""
    backend = engine.dialect.name
    if backend == "postgresql":
        watch_answers(engine, answer_deadline_s(timeout_s))
    elif backend in ("mysql", "mariadb"):
        sa.event.listen(engine, "connect", _mysql_statement_timeout(timeout_s))
    elif backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_progress_deadline)
        sa.event.listen(engine, "before_cursor_execute", _set_deadline(timeout_s))
    elif backend == "duckdb":
        sa.event.listen(engine, "before_cursor_execute", _start_interrupt_timer(timeout_s))
        sa.event.listen(engine, "after_cursor_execute", _stop_interrupt_timer)
        sa.event.listen(engine, "handle_error", _stop_interrupt_timer_on_error)


def _mysql_statement_timeout(timeout_s: float):
    def on_connect(dbapi_conn, record) -> None:
        mariadb = "mariadb" in str(dbapi_conn.get_server_info()).lower()
        sql = (
            f"SET SESSION max_statement_time = {timeout_s:.3f}"  # MariaDB: seconds, any statement
            if mariadb
            else f"SET SESSION max_execution_time = {int(timeout_s * 1000)}"  # MySQL: ms, SELECT
        )
        with dbapi_conn.cursor() as cursor:
            cursor.execute(sql)

    return on_connect


def _sqlite_progress_deadline(dbapi_conn, record) -> None:
    info = record.info

    def past_deadline() -> int:
        deadline = info.get("tdsync_deadline")
        return int(deadline is not None and time.monotonic() > deadline)  # non-zero aborts

    dbapi_conn.set_progress_handler(past_deadline, 10_000)


def _set_deadline(timeout_s: float):
    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        # Not cleared after execute: SQLite does most of its work while rows are fetched.
        conn.info["tdsync_deadline"] = time.monotonic() + timeout_s

    return before


def _start_interrupt_timer(timeout_s: float):
    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        _stop_interrupt_timer(conn)
        timer = threading.Timer(timeout_s, conn.connection.dbapi_connection.interrupt)
        timer.daemon = True
        conn.info["tdsync_timer"] = timer
        timer.start()

    return before


def _stop_interrupt_timer(conn, *args) -> None:
    timer = conn.info.pop("tdsync_timer", None)
    if timer is not None:
        timer.cancel()


def _stop_interrupt_timer_on_error(context) -> None:
    if context.connection is not None:
        _stop_interrupt_timer(context.connection)
