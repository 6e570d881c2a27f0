"""Sources layer: the one place that turns a connection URI into a SQLAlchemy engine.

Every engine only reads, and gets connect and statement timeouts, TCP keepalives and, for
PostgreSQL, a client-side bound on waiting for an answer (tdsync.sources.timeouts,
tdsync.sources.source_watch), so an unreachable, stuck or silent source fails with
`invalid_database_connection` instead of hanging a run.
"""

from __future__ import annotations

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
from tdsync.sources.timeouts import bound_statements, connect_timeout_args

T = TypeVar("T")


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
    connect_args = connect_timeout_args(backend, url.get_driver_name(), timeout_s)
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
