"""Services layer: managing connections and taking one for a run.

Registering a connection, as the Dataherald engine does: try it, store it, list its tables; and
changing one with the same checks. The API routes and the CLI both call these. The listing is a
refresh run like any other (started by the caller's RunStarter, tdsync.defs.runs); when it fails,
the connection is deleted again, so a registration that answers an error stores nothing.

Taking a connection is the first step of every refresh and scan run: once the connection is read,
its lease is taken for the run (tdsync.services.connection_lease), and what the run's later steps
need of it travels as a ConnectionRef.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tdsync.config.settings import Settings
from tdsync.domain.models import DATA_MAX_AGE_S, DatabaseConnection
from tdsync.services import connection_lease
from tdsync.services.run_starter import RunStarter
from tdsync.sources.check import check_connection
from tdsync.store import CatalogueStore


@dataclass(frozen=True)
class ConnectionRef:
    """What a run's steps pass around: never the URI (outputs are stored; URIs hold passwords)."""

    id: str
    alias: str
    dialect: str
    schemas: list[str] | None
    refresh_schedule: str | None = None
    data_max_age_s: int = DATA_MAX_AGE_S


def take_connection(
    store: CatalogueStore,
    connection: DatabaseConnection,
    *,
    holder: str,
    kind: str,
    wait_s: float,
    on_wait: Callable[[dict[str, Any]], None] | None = None,
) -> ConnectionRef:
    """Take the connection's lease for run `holder` (waiting at most `wait_s` for another run of
    it; ConnectionBusy after that), from the connection as already read: no second read."""
    connection_lease.acquire(
        store, connection.id, holder=holder, kind=kind, wait_s=wait_s, on_wait=on_wait
    )
    return ConnectionRef(
        connection.id,
        connection.alias,
        connection.dialect,
        connection.schemas,
        connection.refresh_schedule,
        connection.data_max_age_s,
    )


def register_connection(
    store: CatalogueStore,
    *,
    runs: RunStarter,
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
        runs.refresh(connection.id)
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
