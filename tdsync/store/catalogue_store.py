"""Store layer: CatalogueStore, the one small facade over the catalogue's repositories.

Each repository owns its collection: Connections (`database_connections`), Descriptions and
DescriptionEdits (`table_descriptions`: refreshes and listing; people's edits), Scans (the
SYNCHRONIZING lifecycle of the same rows), ConnectionLeases (`connection_leases`) and
CatalogueVersions (`catalogue_versions`). The facade delegates, and does the two writes that span
collections (deleting a connection, recording a refresh's end).

People's work (connections, the descriptions they write) and the connection lease are journaled
before they are acknowledged, so a store that crashes right after answering keeps them
(SecantusDB loses up to ~0.5 s of unjournaled writes to a kill -9). What a refresh or scan writes
is not: the next run recomputes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.cursor import Cursor

from tdsync.config.credentials import Cipher
from tdsync.domain.errors import ConnectionNotFound
from tdsync.domain.models import DATA_MAX_AGE_S, DatabaseConnection, Status, TableDescription
from tdsync.domain.refresh_rules import CatalogueSnapshot, RefreshPlan, StoredTable
from tdsync.domain.scan_model import SavedScans, ScanTarget, TableScan
from tdsync.store.common import (
    CONNECTIONS,
    DESCRIPTIONS,
    LEASES,
    VERSIONS,
    storage_errors,
)
from tdsync.store.connection_leases import ConnectionLeases
from tdsync.store.connections import Connections
from tdsync.store.description_edits import DescriptionEdits
from tdsync.store.descriptions import Descriptions
from tdsync.store.scans import Scans
from tdsync.store.versions import CatalogueVersions


class CatalogueStore:
    """The catalogue in MongoDB. Open it with tdsync.store.client (open_store, shared_store)."""

    def __init__(self, client: MongoClient, db_name: str, cipher: Cipher) -> None:
        self.cipher = cipher
        self.bind(client, db_name)

    def bind(self, client: MongoClient, db_name: str | None = None) -> None:
        """Use `client` from now on: also when the embedded server moved to another port, so
        every holder of this store follows it (tdsync.store.client)."""
        self.client = client
        self.db = client[db_name or self.db.name]
        versions = CatalogueVersions(self.db[VERSIONS])
        connections = Connections(self.db[CONNECTIONS], self.cipher)
        descriptions = self.db[DESCRIPTIONS]
        self._versions = versions
        self._connections = connections
        self._descriptions = Descriptions(descriptions, versions, connections)
        self._edits = DescriptionEdits(descriptions, connections)
        self._scans = Scans(descriptions, versions, connections)
        self._leases = ConnectionLeases(self.db[LEASES])

    @property
    def connections(self) -> Collection:
        return self._connections.collection

    @property
    def descriptions(self) -> Collection:
        return self._descriptions.collection

    @descriptions.setter
    def descriptions(self, collection: Collection) -> None:
        # Tests put a faulty collection in the place of the real one (its journaled writes, made
        # at bind(), are left as they are).
        for repository in (self._descriptions, self._edits, self._scans):
            repository.collection = collection

    # -- set-up and start-up checks --------------------------------------------------------------

    def ensure_indexes(self) -> None:
        self._connections.ensure_indexes()
        self._descriptions.ensure_indexes()

    def ping(self) -> None:
        with storage_errors():
            self.client.admin.command("ping")

    def verify_key(self) -> None:
        self._connections.verify_key()

    # -- writes that span collections --------------------------------------------------------------

    def delete_connection(self, connection_id: str) -> None:
        """Delete a connection and its descriptions, whatever refreshes it at the same moment.

        The connection is marked `deleting` before its descriptions go: a refresh (in any process)
        records its end on the connection after its writes and, finding it marked or gone, sweeps
        its rows itself (`mark_refreshed`), so no description outlives its connection. Scans only
        update rows that exist, so they cannot bring one back.
        """
        cid = self._connections.mark_deleting(connection_id)
        self._descriptions.delete_of_connection(cid, journaled=True)
        self._versions.forget(cid)
        self._connections.delete(cid)

    def mark_refreshed(self, connection_id: str, now: datetime) -> None:
        """Record a refresh's end, after its writes. A connection deleted meanwhile (or being
        deleted) gets its rows deleted again, those the refresh inserted after the delete swept
        them included, and the refresh is told: ConnectionNotFound.

        One conditional write on the connection: it is ordered with the delete's `deleting` mark,
        so either it comes first (and the delete's sweep follows the refresh's writes) or this
        sweep does.
        """
        if self._connections.mark_refreshed(connection_id, now):
            return
        self._descriptions.delete_of_connection(connection_id)
        self._versions.forget(connection_id)
        raise ConnectionNotFound(
            f"database connection {connection_id!r} was deleted while it was being refreshed",
            {"db_connection_id": connection_id},
        )

    # -- connections -------------------------------------------------------------------------------

    def add_connection(
        self,
        *,
        alias: str,
        connection_uri: str,
        schemas: list[str] | None = None,
        refresh_schedule: str | None = None,
        auto_scan: bool = False,
        scan_schedule: str | None = None,
        data_max_age_s: int = DATA_MAX_AGE_S,
        metadata: dict[str, Any] | None = None,
        use_ssh: bool | None = None,
        ssh_settings: dict[str, Any] | None = None,
        llm_api_key: str | None = None,
    ) -> DatabaseConnection:
        return self._connections.add_connection(
            alias=alias,
            connection_uri=connection_uri,
            schemas=schemas,
            refresh_schedule=refresh_schedule,
            auto_scan=auto_scan,
            scan_schedule=scan_schedule,
            data_max_age_s=data_max_age_s,
            metadata=metadata,
            use_ssh=use_ssh,
            ssh_settings=ssh_settings,
            llm_api_key=llm_api_key,
        )

    def update_connection(self, connection_id: str, **changes: Any) -> DatabaseConnection:
        return self._connections.update_connection(connection_id, **changes)

    def get_connection(self, id_or_alias: str) -> DatabaseConnection:
        return self._connections.get_connection(id_or_alias)

    def list_connections(self) -> list[DatabaseConnection]:
        return self._connections.list_connections()

    def connection_uri(self, connection_id: str) -> str:
        return self._connections.connection_uri(connection_id)

    def unmasked_uri(self, connection: str | dict[str, Any], connection_uri: str) -> str:
        return self._connections.unmasked_uri(connection, connection_uri)

    def ssh_settings(
        self, connection_id: str, changes: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        return self._connections.ssh_settings(connection_id, changes)

    def source_access(self, connection_id: str) -> tuple[str, dict[str, Any] | None]:
        return self._connections.source_access(connection_id)

    def refreshed_at(self, connection_id: str) -> datetime | None:
        """The connection's last successful refresh, the `last_refreshed_at` of each of its
        rows that is not DEPRECATED (read it before the rows)."""
        return self._connections.refreshed_at(connection_id)

    # -- connection leases -------------------------------------------------------------------------

    def acquire_connection_lease(
        self, connection_id: str, *, holder: str, kind: str, ttl_s: float, now: datetime
    ) -> bool:
        return self._leases.acquire_connection_lease(
            connection_id, holder=holder, kind=kind, ttl_s=ttl_s, now=now
        )

    def renew_connection_lease(
        self, connection_id: str, *, holder: str, ttl_s: float, now: datetime
    ) -> bool:
        return self._leases.renew_connection_lease(
            connection_id, holder=holder, ttl_s=ttl_s, now=now
        )

    def release_connection_leases(
        self, holder: str, *, succeeded: bool, outcome: Any = None, now: datetime
    ) -> int:
        return self._leases.release_connection_leases(
            holder, succeeded=succeeded, outcome=outcome, now=now
        )

    def connection_lease(self, connection_id: str) -> dict[str, Any] | None:
        return self._leases.connection_lease(connection_id)

    # -- catalogue versions ------------------------------------------------------------------------

    def catalogue_version(self, connection_id: str) -> tuple[str, CatalogueSnapshot | None]:
        return self._versions.catalogue_version(connection_id)

    # -- descriptions: refreshes, listing, counts --------------------------------------------------

    def stored_tables(self, connection_id: str) -> list[StoredTable]:
        return self._descriptions.stored_tables(connection_id)

    def apply_refresh(self, connection_id: str, plan: RefreshPlan, now: datetime) -> int:
        return self._descriptions.apply_refresh(connection_id, plan, now)

    def list_descriptions(
        self,
        connection_id: str,
        *,
        schema_name: str | None = None,
        table_name: str | None = None,
        status: Status | None = None,
    ) -> list[TableDescription]:
        return self._descriptions.list_descriptions(
            connection_id, schema_name=schema_name, table_name=table_name, status=status
        )

    def description_docs(
        self,
        connection_id: str,
        *,
        schema_name: str | None = None,
        table_name: str | None = None,
        status: Status | None = None,
        limit: int | None = None,
        after: str | None = None,
        batch_size: int = 100_000,
    ) -> Cursor:
        return self._descriptions.description_docs(
            connection_id,
            schema_name=schema_name,
            table_name=table_name,
            status=status,
            limit=limit,
            after=after,
            batch_size=batch_size,
        )

    def status_counts(self, connection_id: str) -> dict[str, int]:
        return self._descriptions.status_counts(connection_id)

    def descriptions_with_status(self, connection_id: str, status: Status) -> int:
        return self._descriptions.descriptions_with_status(connection_id, status)

    def failed_descriptions(self, connection_id: str, *, limit: int = 20) -> dict[str, str]:
        return self._descriptions.failed_descriptions(connection_id, limit=limit)

    # -- descriptions: people's edits --------------------------------------------------------------

    def get_description(self, description_id: str) -> TableDescription:
        return self._edits.get_description(description_id)

    def update_description(self, description_id: str, changes: dict[str, Any]) -> TableDescription:
        return self._edits.update_description(description_id, changes)

    def merge_metadata(
        self, description_ids: list[str], metadata: dict[str, Any]
    ) -> list[TableDescription]:
        return self._edits.merge_metadata(description_ids, metadata)

    def edit_description(
        self,
        description_id: str,
        *,
        fields: dict[str, Any],
        columns: dict[str, dict[str, Any]],
    ) -> TableDescription:
        return self._edits.edit_description(description_id, fields=fields, columns=columns)

    # -- scans -------------------------------------------------------------------------------------

    def expire_scan_leases(self, connection_id: str, now: datetime) -> int:
        return self._scans.expire_scan_leases(connection_id, now)

    def scans_past_lease(self, connection_id: str, now: datetime) -> list[str]:
        return self._scans.scans_past_lease(connection_id, now)

    def scan_targets(
        self,
        *,
        connection_id: str | None = None,
        ids: list[str] | None = None,
        table_names: list[str] | None = None,
    ) -> list[ScanTarget]:
        return self._scans.scan_targets(
            connection_id=connection_id, ids=ids, table_names=table_names
        )

    def claim_for_scan(
        self, connection_id: str, ids: list[str] | None, *, run_id: str, lease_expires_at: datetime
    ) -> list[ScanTarget]:
        return self._scans.claim_for_scan(
            connection_id, ids, run_id=run_id, lease_expires_at=lease_expires_at
        )

    def mark_for_scan(
        self, connection_id: str, ids: list[str] | None, *, run_id: str, lease_expires_at: datetime
    ) -> None:
        self._scans.mark_for_scan(
            connection_id, ids, run_id=run_id, lease_expires_at=lease_expires_at
        )

    def renew_scan_lease(self, connection_id: str, run_id: str, lease_expires_at: datetime) -> int:
        return self._scans.renew_scan_lease(connection_id, run_id, lease_expires_at)

    def save_scans(self, run_id: str, scans: list[TableScan], now: datetime) -> SavedScans:
        return self._scans.save_scans(run_id, scans, now)

    def claimed_descriptions(self, connection_id: str, run_id: str) -> list[TableDescription]:
        return self._scans.claimed_descriptions(connection_id, run_id)

    def fail_synchronizing(
        self, connection_id: str, *, error_message: str, scan_run_id: str | None = None
    ) -> int:
        return self._scans.fail_synchronizing(
            connection_id, error_message=error_message, scan_run_id=scan_run_id
        )
