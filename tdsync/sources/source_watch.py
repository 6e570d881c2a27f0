"""Sources layer: a client-side bound on waiting for a PostgreSQL source (SourceWatch).

libpq has no read timeout: statement_timeout and keepalives rely on the server or the peer's
kernel answering. A source behind a proxy or firewall that keeps the connection open but stops
relaying would hold a read forever (a tester's scan stayed stuck 15 minutes, rows SYNCHRONIZING).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tdsync.domain.errors import InvalidDatabaseConnection


class SourceStopped(InvalidDatabaseConnection):
    """The source stopped answering: the network or a proxy went silent, the server did not fail."""


class SourceWatch:
    """Statements of one engine waiting for the source, and when it last answered.

    While statements wait, a thread looks at them twice a second and cuts off (shuts the socket
    of) one without an answer for `deadline_s`; it raises SourceStopped. A scan also sets
    `stall_s`: when no statement got an answer for that long, the source is taken as gone, every
    waiting statement is cut off and any new one raises at once (`stopped()`).
    """

    POLL_S = 0.5

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.stall_s: float | None = None
        self.silent_for: float | None = None  # set when the source is taken as gone
        self._quiet_s = 0.0  # time spent waiting since the source last answered
        self._waiting: dict[int, tuple[float, Any]] = {}  # id(DBAPI connection): (since, it)
        self._cut: dict[int, float] = {}  # cut off: how long they waited
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def stopped(self) -> SourceStopped:
        return SourceStopped(f"the source stopped answering for {self.silent_for or 0:.0f} s")

    def started(self, dbapi_conn: Any) -> None:
        if self.silent_for is not None:
            raise self.stopped()  # the source is gone: no statement waits for it again
        with self._lock:
            self._waiting[id(dbapi_conn)] = (time.monotonic(), dbapi_conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="tdsync-source-watch")
                self._thread.daemon = True
                self._thread.start()

    def answered(self, dbapi_conn: Any) -> None:
        with self._lock:
            self._quiet_s = 0.0
            self._waiting.pop(id(dbapi_conn), None)

    def failed(self, dbapi_conn: Any, *, answered: bool) -> float | None:
        """A statement raised; returns how long it waited if this watch cut it off."""
        with self._lock:
            was_waiting = self._waiting.pop(id(dbapi_conn), None) is not None
            waited = self._cut.pop(id(dbapi_conn), None)
            if answered and was_waiting:  # the server's own error: it answered
                self._quiet_s = 0.0
        return waited

    def _watch(self) -> None:
        polled = time.monotonic()
        while True:
            time.sleep(self.POLL_S)
            now = time.monotonic()
            with self._lock:
                if not self._waiting:
                    self._thread = None  # started again by the next statement
                    return
                # Only time spent waiting counts: a scan may pause between statements.
                self._quiet_s += min(now - polled, 2 * self.POLL_S)
                polled = now
                gone = self.stall_s is not None and self._quiet_s > self.stall_s
                if gone:
                    self.silent_for = self._quiet_s
                late = [
                    (key, now - since, conn)
                    for key, (since, conn) in self._waiting.items()
                    if gone or now - since > self.deadline_s
                ]
                for key, waited, _ in late:
                    self._cut[key] = waited
                    del self._waiting[key]
            for _, _, conn in late:
                _shut_down(conn)


def watch_answers(engine: Engine, deadline_s: float) -> SourceWatch:
    watch = SourceWatch(deadline_s)
    current = threading.local()  # the DBAPI connection this thread waits on, for errors
    engine._tdsync_watch = watch  # type: ignore[attr-defined]  # found by source_watch()

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        current.conn = cursor.connection
        watch.started(cursor.connection)

    def after(conn, cursor, statement, parameters, context, executemany) -> None:
        watch.answered(cursor.connection)

    def connecting(dialect, conn_rec, cargs, cparams) -> Any:
        # The dialect's set-up queries on a new connection (server version, hstore OIDs...) run
        # outside any statement event: watched from here until the connect event below.
        current.conn = opening = object()  # a connection being opened waits on the source too
        watch.started(opening)
        try:
            dbapi_conn = dialect.connect(*cargs, **cparams)
        except BaseException:
            watch.failed(opening, answered=False)
            raise
        watch.answered(opening)
        current.conn = dbapi_conn
        watch.started(dbapi_conn)
        return dbapi_conn

    def connected(dbapi_conn, record) -> None:
        watch.answered(dbapi_conn)

    def on_error(context) -> None:
        waited = watch.failed(getattr(current, "conn", None), answered=not context.is_disconnect)
        if watch.silent_for is not None:
            raise watch.stopped() from None
        if waited is not None:
            raise SourceStopped(f"the source did not answer for {waited:.0f} s") from None

    for name in ("do_rollback", "do_commit"):  # DBAPI calls outside any statement event
        setattr(engine.dialect, name, _watched(getattr(engine.dialect, name), watch, current))
    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    sa.event.listen(engine, "handle_error", on_error)
    sa.event.listen(engine, "do_connect", connecting)
    sa.event.listen(engine, "connect", connected)
    return watch


def _watched(call: Callable[[Any], None], watch: SourceWatch, current: threading.local):
    def watched(dbapi_conn: Any) -> None:
        current.conn = dbapi_conn
        watch.started(dbapi_conn)
        call(dbapi_conn)  # an error goes through handle_error, as a statement's does
        watch.answered(dbapi_conn)

    return watched


def source_watch(engine: Engine) -> SourceWatch | None:
    """The engine's SourceWatch (PostgreSQL engines of create_source_engine), else None."""
    return getattr(engine, "_tdsync_watch", None)


def _shut_down(dbapi_conn: Any) -> None:
    """Shut the connection's socket (a duplicate of its descriptor): its blocked read returns."""
    with contextlib.suppress(Exception):  # already closed: nothing to cut
        sock = socket.socket(fileno=os.dup(dbapi_conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
