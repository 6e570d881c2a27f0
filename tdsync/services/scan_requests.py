"""Services layer: starting scans outside the caller, what `POST /table-descriptions/sync-schemas`
does.

The request's rows are marked SYNCHRONIZING at once, under a new Dagster run id per connection;
the caller's RunStarter (tdsync.defs.runs) then starts the scan run with that id and returns: the
run is submitted to the instance in `production` and `distributed`, and runs in a detached process
in `local` (tdsync.defs.scan_process). A run that cannot be started fails its rows at once.
"""

from __future__ import annotations

import uuid

from tdsync.config.settings import Settings
from tdsync.domain.errors import TableDescriptionNotFound
from tdsync.domain.models import DatabaseConnection, TableDescription, utcnow
from tdsync.domain.scan_model import ScanTarget
from tdsync.services.run_starter import RunNotStarted, RunStarter
from tdsync.services.scan import changed_targets
from tdsync.store import CatalogueStore, lease_expiry


def request_scan(
    store: CatalogueStore,
    settings: Settings,
    *,
    db_connection_id: str | None = None,
    ids: list[str] | None = None,
    table_names: list[str] | None = None,
    changed_only: bool = False,
    runs: RunStarter,
) -> list[TableDescription]:
    """Mark the requested descriptions SYNCHRONIZING and start their scan runs; returns them.

    A connection that has no description to scan yet, or lacks a named table, is refreshed
    first (unless ids are asked for): a scan right after registering a connection scans it.
    `changed_only` narrows the request to the tables tdsync.domain.scan_rules picks, decided here
    because the rows are claimed before the run starts.
    """
    if db_connection_id is None:
        groups: dict[str, list[ScanTarget]] = {}
        for target in store.scan_targets(ids=ids, table_names=table_names):
            groups.setdefault(target.db_connection_id, []).append(target)
        if changed_only:
            groups = {
                c: _changed(store, settings, store.get_connection(c), group)
                for c, group in groups.items()
            }
        return [
            desc
            for connection_id, group in groups.items()
            for desc in _claim_and_start(
                store, settings, runs, connection_id, [t.id for t in group], table_names
            )
        ]

    connection = store.get_connection(db_connection_id)
    connection_id = connection.id
    may_refresh = ids is None
    try:
        chosen = _chosen(store, settings, connection, ids, table_names, changed_only)
    except TableDescriptionNotFound:
        if not may_refresh:
            raise
        chosen = []
    claimed = _claim_and_start(store, settings, runs, connection_id, chosen, table_names)
    if claimed or not may_refresh:
        return claimed
    # Nothing to scan yet, or a named table is new to the catalogue: list tables, try again.
    runs.refresh(connection_id)
    chosen = _chosen(store, settings, connection, ids, table_names, changed_only)
    return _claim_and_start(store, settings, runs, connection_id, chosen, table_names)


def _chosen(
    store: CatalogueStore,
    settings: Settings,
    connection: DatabaseConnection,
    ids: list[str] | None,
    table_names: list[str] | None,
    changed_only: bool,
) -> list[str] | None:
    """The ids a request names (None: all of the connection's), unknown ones refused."""
    if ids is None and not table_names and not changed_only:
        return None
    targets = store.scan_targets(connection_id=connection.id, ids=ids, table_names=table_names)
    if changed_only:
        targets = _changed(store, settings, connection, targets)
    return [t.id for t in targets]


def _changed(
    store: CatalogueStore,
    settings: Settings,
    connection: DatabaseConnection,
    targets: list[ScanTarget],
) -> list[ScanTarget]:
    """What a changed-only scan of `targets` re-reads: one catalog query per schema."""
    return changed_targets(
        store,
        connection.id,
        targets,
        max_age_s=connection.data_max_age_s,
        now=utcnow(),
        settings=settings,
    )


def _claim_and_start(
    store: CatalogueStore,
    settings: Settings,
    runs: RunStarter,
    connection_id: str,
    ids: list[str] | None,
    table_names: list[str] | None,
) -> list[TableDescription]:
    if ids == []:
        return []
    run_id = str(uuid.uuid4())
    now = utcnow()
    store.expire_scan_leases(connection_id, now)
    store.mark_for_scan(
        connection_id, ids, run_id=run_id, lease_expires_at=lease_expiry(now, settings.scan_lease_s)
    )
    claimed = store.claimed_descriptions(connection_id, run_id)
    if not claimed:
        return []
    # The run's config says what was asked: all of the connection, or these rows.
    asked = {"table_names": table_names if ids is not None else None, "description_ids": ids}
    try:
        runs.start_scan(connection_id, run_id=run_id, **asked)
    except RunNotStarted as exc:  # say so on the rows now
        store.fail_synchronizing(
            connection_id,
            error_message=f"the scan run could not be started: {exc}",
            scan_run_id=run_id,
        )
        return store.claimed_descriptions(connection_id, run_id)
    return claimed
