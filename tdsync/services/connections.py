"""Registering a connection, as the Dataherald engine does: try it, store it, list its tables;
and changing one with the same checks. The API routes and the CLI both call these.

The listing is a refresh run like any other (a Dagster run on the configured instance); when it
fails, the connection is deleted again, so a registration that answers an error stores nothing.
"""

from __future__ import annotations

from typing import Any

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.models import DatabaseConnection
from tdsync.sources.check import check_connection
from tdsync.store import CatalogueStore


def register_connection(
    store: CatalogueStore,
    *,
    trigger: str,
    timeout_s: float,
    settings: Settings,
    **fields: Any,
) -> DatabaseConnection:
    """Check the connection (connect once, look for its schemas), store it and refresh it: its
    tables are NOT_SCANNED descriptions when this returns."""
    check_connection(
        fields["connection_uri"],
        fields.get("schemas"),
        timeout_s=timeout_s,
        ssh=fields.get("ssh_settings") if fields.get("use_ssh") else None,
        settings=settings,
    )
    connection = store.add_connection(**fields)
    try:
        runs.refresh(connection.id, trigger=trigger, settings=settings)
    except BaseException:
        store.delete_connection(connection.id)
        raise
    return store.get_connection(connection.id)


def change_connection(
    store: CatalogueStore,
    connection: DatabaseConnection,
    changes: dict[str, Any],
    *,
    timeout_s: float,
    settings: Settings,
) -> DatabaseConnection:
    """Apply checked `changes`: a masked password keeps the stored one, and the source is tried
    again when what reaches it (URI, SSH, schemas) changes."""
    if "connection_uri" in changes:
        changes["connection_uri"] = store.unmasked_uri(connection.id, changes["connection_uri"])
    if {"connection_uri", "use_ssh", "ssh_settings"} & changes.keys() or changes.get("schemas"):
        check_connection(
            changes.get("connection_uri") or store.connection_uri(connection.id),
            changes.get("schemas", connection.schemas),
            timeout_s=timeout_s,
            ssh=store.ssh_settings(connection.id, changes),
            settings=settings,
        )
    return store.update_connection(connection.id, **changes)
