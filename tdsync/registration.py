"""Registering a connection, as the Dataherald engine does: try it, store it, list its tables.

The listing is a refresh run like any other (a Dagster run on the configured instance); when it
fails, the connection is deleted again, so a registration that answers an error stores nothing.
"""

from __future__ import annotations

from typing import Any

from tdsync import runs
from tdsync.models import DatabaseConnection
from tdsync.sources import check_connection
from tdsync.store import CatalogueStore


def register_connection(
    store: CatalogueStore, *, trigger: str, timeout_s: float, **fields: Any
) -> DatabaseConnection:
    """Check the connection (connect once, look for its schemas), store it and refresh it: its
    tables are NOT_SCANNED descriptions when this returns."""
    check_connection(
        fields["connection_uri"],
        fields.get("schemas"),
        timeout_s=timeout_s,
        ssh=fields.get("ssh_settings") if fields.get("use_ssh") else None,
    )
    connection = store.add_connection(**fields)
    try:
        runs.refresh(connection.id, trigger=trigger)
    except BaseException:
        store.delete_connection(connection.id)
        raise
    return store.get_connection(connection.id)
