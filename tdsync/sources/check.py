"""Sources layer: checking a connection once, before it is registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tdsync.config.credentials import parse_uri
from tdsync.config.settings import Settings
from tdsync.domain.errors import InvalidDatabaseConnection, TdsyncError
from tdsync.sources.engine import FILE_DIALECTS, driver_message, source_engine


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
