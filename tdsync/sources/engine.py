"""The one place that turns a connection URI into a SQLAlchemy engine, and the live listing.

Every engine gets connect and statement timeouts, TCP keepalives and, for PostgreSQL, a
client-side bound on waiting for an answer (SourceWatch), so an unreachable, stuck or silent
source fails with `invalid_database_connection` instead of hanging a run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from tdsync.config.credentials import parse_uri, scrub
from tdsync.config.settings import Settings
from tdsync.domain.errors import InvalidDatabaseConnection, TdsyncError
from tdsync.domain.models import TableType
from tdsync.domain.refresh_rules import Listing, LiveTable

T = TypeVar("T")


class SourceStopped(InvalidDatabaseConnection):
    """The source stopped answering: the network or a proxy went silent, the server did not fail."""


def answer_deadline_s(timeout_s: float) -> float:
    """How long a client waits for any answer to a statement: twice the statement timeout the
    server enforces itself, so only a source that cannot answer at all is cut off."""
    return 2 * max(1, int(round(timeout_s)))


def _timeout_args(backend: str, driver: str, timeout_s: float) -> dict[str, Any]:
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


def create_source_engine(
    connection_uri: str, *, settings: Settings, timeout_s: float = 10.0
) -> Engine:
    """An engine that only reads: every session is read-only, and a URI is checked against the
    allow-lists again here, so a connection stored before they existed cannot bypass them.
    `settings` say where tdsync's own state is (never a source)."""
    url = parse_uri(connection_uri)
    backend = url.get_backend_name()
    if backend in FILE_DIALECTS:
        refuse_tdsync_state(url.database, settings)
    if backend in ("mysql", "mariadb") and url.get_driver_name() in ("", "mysqldb"):
        url = url.set(drivername=f"{backend}+pymysql")  # the driver tdsync ships
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        # Read-only, and never an empty file for a mistyped path (`ro` opens existing files only).
        # Quoted, as `#`, `?` and `%` in a path mean something else in a SQLite URI.
        url = url.set(database=f"file:{quote(url.database)}", query={"mode": "ro", "uri": "true"})
    connect_args = _timeout_args(backend, url.get_driver_name(), timeout_s)
    if "options" in connect_args and url.query.get("options"):
        # Keep the URI's own server options (a search_path, a role...): tdsync's timeout comes
        # last, so it wins over one set there.
        mine = url.query["options"]
        mine = " ".join(mine) if isinstance(mine, tuple) else mine
        connect_args["options"] = f"{mine} {connect_args['options']}"
        url = url.difference_update_query(["options"])
    connect_args.update(_read_only_args(backend, connect_args))
    try:
        engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
        bound_statements(engine, timeout_s)
        if backend in ("mysql", "mariadb"):
            sa.event.listen(engine, "connect", _mysql_read_only)
        if backend in SERVER_DIALECTS:
            # The dialect's own connect, wrapped: every do_connect listener (the SourceWatch's
            # too) goes through it.
            engine.dialect.connect = _connect_in_own_words(url, engine.dialect)
        return engine
    except Exception as exc:
        raise InvalidDatabaseConnection(
            "cannot create a database engine for this connection",
            {"reason": scrub(str(exc), connection_uri)},
        ) from None


# -- sources only read ---------------------------------------------------------------------------

# A path that never exists (inside tdsync's package): libpq skips a missing password file
# silently, where /dev/null would make it warn on every connection.
NO_PASSFILE = Path(__file__).with_name("no-such-passfile")
DEMO_FOLDER = "demo"  # under TDSYNC_HOME: `tdsync demo`'s sample database
SERVER_DIALECTS = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB"}
FILE_DIALECTS = ("sqlite", "duckdb")

# DuckDB: the file read-only, and no file, network or extension access beyond it (`read_text`,
# `read_csv`, `COPY`, `ATTACH`, `INSTALL` fail), locked so no statement can turn it back on.
_DUCKDB_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


def _read_only_args(backend: str, connect_args: dict[str, Any]) -> dict[str, Any]:
    if backend == "postgresql":
        # After the URI's options and the timeouts, so it wins over any of theirs; and libpq reads
        # no password file of tdsync's host: a source's credentials come from its URI only.
        options = f"{connect_args.get('options', '')} -c default_transaction_read_only=on"
        return {"options": options.strip(), "passfile": str(NO_PASSFILE)}
    if backend == "duckdb":
        return {"read_only": True, "config": dict(_DUCKDB_CONFIG)}
    return {}


def _mysql_read_only(dbapi_conn, record) -> None:
    with dbapi_conn.cursor() as cursor:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")


def refuse_tdsync_state(database: str | None, settings: Settings) -> None:
    """A database file inside tdsync's own state (TDSYNC_HOME: the store's folder, the key;
    DAGSTER_HOME: run history) is never a source; symlinks are followed. The demo's sample
    database, TDSYNC_HOME/demo, is the one exception."""
    if database in (None, "", ":memory:"):
        return
    path = Path(database).expanduser().resolve()
    home, dagster_home = settings.home.resolve(), settings.dagster_home.resolve()
    inside = [d for d in (home, dagster_home) if path.is_relative_to(d)]
    if inside and not (inside == [home] and path.is_relative_to(home / DEMO_FOLDER)):
        raise InvalidDatabaseConnection(
            "a database file inside tdsync's own state (TDSYNC_HOME or DAGSTER_HOME) cannot be "
            "a source",
            {"path": database},
        )


# -- errors in tdsync's words where a driver would echo what a stranger sent --------------------

# Errors that mean whatever answers on the port does not speak the dialect's protocol. libpq
# quotes the bytes it got; PyMySQL raises ValueError, struct.error... with the "version" a banner
# put where a server's handshake goes. Neither is the source's business to tell the caller.
_NOT_THE_PROTOCOL = (
    "received invalid response to ssl negotiation",
    "expected authentication request from server",
    "server sent an error response during ssl exchange",
    "lost synchronization with server",
    "unexpected message type",
    "packet sequence number wrong",
)


def _connect_in_own_words(url: sa.URL, dialect: sa.Dialect):
    port = url.port or {"postgresql": 5432}.get(url.get_backend_name(), 3306)
    message = (
        f"the server at {url.host}:{port} did not answer as "
        f"{SERVER_DIALECTS[url.get_backend_name()]}"
    )
    connect = dialect.connect

    def in_own_words(*cargs, **cparams):
        try:
            return connect(*cargs, **cparams)
        except Exception as exc:
            if _not_the_protocol(exc, dialect.loaded_dbapi):
                raise dialect.loaded_dbapi.OperationalError(message) from None
            raise

    return in_own_words


def _not_the_protocol(exc: Exception, dbapi: Any) -> bool:
    if isinstance(exc, dbapi.Error):
        return any(words in str(exc).lower() for words in _NOT_THE_PROTOCOL)
    # Not a driver error: the driver choked on what it read once connected (PyMySQL parses the
    # handshake in Connection.connect; a bad option fails before, in __init__).
    return any(
        frame.f_code.co_name == "connect" and "pymysql" in frame.f_code.co_filename
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


@contextmanager
def source_engine(
    connection_uri: str,
    *,
    timeout_s: float = 10.0,
    ssh: dict[str, Any] | None = None,
    settings: Settings,
) -> Iterator[Engine]:
    """An engine whose driver errors come out as InvalidDatabaseConnection, password removed;
    through an SSH tunnel when `ssh` settings are given."""
    if ssh is not None:
        from tdsync.sources.ssh import tunnel  # paramiko loads only for connections that use SSH

        with (
            tunnel(connection_uri, ssh, timeout_s=timeout_s) as tunnelled,
            source_engine(tunnelled, timeout_s=timeout_s, settings=settings) as engine,
        ):
            yield engine
        return
    engine = create_source_engine(connection_uri, timeout_s=timeout_s, settings=settings)
    try:
        yield engine
    except TdsyncError:
        raise
    except (sa.exc.DBAPIError, sa.exc.SQLAlchemyError, OSError) as exc:
        raise InvalidDatabaseConnection(
            "the source database cannot be read",
            {"reason": driver_message(exc, connection_uri)},
        ) from None
    finally:
        engine.dispose()


def driver_message(exc: BaseException, connection_uri: str) -> str:
    """A driver error's first line, the connection's password removed."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return scrub(text.splitlines()[0] if text else type(exc).__name__, connection_uri)


def is_disconnect(exc: BaseException) -> bool:
    """The source dropped the connection (a restart, a failover, a terminated backend)."""
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


def once_more_if_disconnected(read: Callable[[], T]) -> T:
    """Run a read, and once more on a new connection if the source dropped the first one:
    a momentary disconnection should not fail a whole refresh. Reads are safe to repeat."""
    try:
        return read()
    except sa.exc.DBAPIError as exc:
        if not is_disconnect(exc):
            raise
    return read()


def list_live_tables(
    connection_uri: str,
    schemas: list[str] | None,
    *,
    timeout_s: float = 10.0,
    ssh: dict[str, Any] | None = None,
    settings: Settings,
) -> Listing:
    """Names and kinds of every table, view and materialized view, per schema; no data is read."""
    with source_engine(connection_uri, timeout_s=timeout_s, ssh=ssh, settings=settings) as engine:
        return once_more_if_disconnected(lambda: _list_live_tables(engine, schemas))


def _list_live_tables(engine: Engine, schemas: list[str] | None) -> Listing:
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if conn.dialect.name == "postgresql":
            targets = list(dict.fromkeys(schemas)) if schemas else [inspector.default_schema_name]
            return Listing(_list_postgresql(conn, targets, explicit=bool(schemas)))
        if schemas:
            existing = set(inspector.get_schema_names())
            targets = list(dict.fromkeys(schemas))
        else:
            default = inspector.default_schema_name or "main"
            existing, targets = {default}, [default]
        listing: dict[str, list[LiveTable] | None] = {}
        for schema in targets:
            if schema not in existing:
                listing[schema] = None
                continue
            listing[schema] = _list_schema(inspector, schema, explicit=bool(schemas))
        return Listing(listing)


def _list_schema(inspector: sa.Inspector, schema: str, *, explicit: bool) -> list[LiveTable]:
    # SQLite and DuckDB answer for their default schema with schema=None only.
    arg = schema if explicit else None
    found: dict[str, TableType] = {}
    for name in inspector.get_table_names(schema=arg):
        found[name] = TableType.TABLE
    for name in inspector.get_view_names(schema=arg):
        found[name] = TableType.VIEW
    try:
        materialized = inspector.get_materialized_view_names(schema=arg)
    except NotImplementedError:
        materialized = []
    for name in materialized:
        found[name] = TableType.MATERIALIZED_VIEW
    return [LiveTable(schema, name, kind) for name, kind in sorted(found.items())]


# The inspector asks PostgreSQL one query per schema and kind (plus one for the schema names),
# each a scan of pg_class: 31 queries and 0.35 s for 10 schemas of 1,000 tables. This is the
# same listing in one query: the inspector's filters (relkinds r/p, v, m; no temporary
# relations; explicit schemas named pg_* are not listed), and None for a missing schema.
_PG_LISTING = sa.text(
    "SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_namespace n"
    " LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid"
    " AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relpersistence != 't'"
    " WHERE n.nspname = ANY(:schemas)"
)
_PG_KINDS = {
    "r": TableType.TABLE,
    "p": TableType.TABLE,
    "v": TableType.VIEW,
    "m": TableType.MATERIALIZED_VIEW,
}


def _list_postgresql(
    conn: sa.Connection, targets: list[str], *, explicit: bool
) -> dict[str, list[LiveTable] | None]:
    found: dict[str, dict[str, TableType]] = {}
    for schema, name, kind in conn.execute(_PG_LISTING, {"schemas": targets}):
        if explicit and schema.startswith("pg_"):
            continue
        names = found.setdefault(schema, {})
        if name is not None:
            names[name] = _PG_KINDS[kind]
    return {
        schema: [LiveTable(schema, name, kind) for name, kind in sorted(found[schema].items())]
        if schema in found
        else None
        for schema in targets
    }


# -- checking a connection before it is registered ---------------------------------------------


def check_connection(
    connection_uri: str,
    schemas: list[str] | None = None,
    *,
    timeout_s: float = 10.0,
    ssh: dict[str, Any] | None = None,
    settings: Settings,
) -> None:
    """Connect once and look for the listed schemas: a bad URI, host, password, file or schema
    fails here, when the connection is registered, rather than at its first refresh. Reads no data."""
    url = parse_uri(connection_uri)
    if url.get_backend_name() in FILE_DIALECTS:
        # Connecting would create an empty database (DuckDB) or catalogue nothing (in memory).
        if url.database in (None, "", ":memory:"):
            raise InvalidDatabaseConnection(
                "an in-memory database cannot be catalogued: give the path of a database file"
            )
        if not Path(url.database).is_file():
            raise InvalidDatabaseConnection(
                "the database file does not exist", {"path": url.database}
            )
    with source_engine(connection_uri, timeout_s=timeout_s, ssh=ssh, settings=settings) as engine:
        try:
            with engine.connect() as conn:
                existing = sa.inspect(conn).get_schema_names()
                if url.get_backend_name() == "sqlite":
                    # Opening any file succeeds; reading its catalogue shows it is a database.
                    conn.exec_driver_sql("SELECT 1 FROM sqlite_master LIMIT 1")
        except (TdsyncError, sa.exc.SQLAlchemyError, OSError):
            raise  # source_engine words these
        except Exception as exc:  # drivers raise ValueError, AttributeError... on odd URI options
            raise InvalidDatabaseConnection(
                "the source database cannot be opened with this URI",
                {"reason": driver_message(exc, connection_uri)},
            ) from None
    missing = [s for s in dict.fromkeys(schemas or []) if s not in existing]
    if missing:
        raise InvalidDatabaseConnection(
            f"schema(s) not found in the database: {', '.join(missing)}",
            {"missing_schemas": missing, "existing_schemas": sorted(existing)},
        )


# -- statement timeouts where the driver has no option for one -----------------------------------
# PostgreSQL gets `statement_timeout` from its connect options above. MySQL/MariaDB, SQLite and
# DuckDB are bounded here, so a scan's probe of a huge table is cut off on every dialect alike.


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


# -- a client-side bound on waiting for a PostgreSQL source --------------------------------------
# libpq has no read timeout: statement_timeout and keepalives rely on the server or the peer's
# kernel answering. A source behind a proxy or firewall that keeps the connection open but stops
# relaying would hold a read forever (a tester's scan stayed stuck 15 minutes, rows SYNCHRONIZING).


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
