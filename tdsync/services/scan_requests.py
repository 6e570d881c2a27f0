"""Starting scans outside the caller: what `POST /table-descriptions/sync-schemas` does.

The request's rows are marked SYNCHRONIZING at once, under a new Dagster run id per connection.
In `production` and `distributed`, the scan run is then submitted to the instance (tdsync.defs.runs).
In `local`, where no dagster-daemon may be running, a detached process (`python -m tdsync.services.scan_requests REQUEST.json`) runs the scan job with that
run id through tdsync.defs.runs: the run is recorded on the DAGSTER_HOME instance like any other, needs
no dagster-daemon, and survives a restart of the API that started it. If that process dies, its
rows turn FAILED: at once when the API is still there to see it exit, else when their lease runs
out (the next refresh or scan, or the run-failure sensor).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from tdsync.config.deployment import deployment
from tdsync.config.settings import Settings
from tdsync.domain.errors import TableDescriptionNotFound, TdsyncError
from tdsync.domain.models import TableDescription, utcnow
from tdsync.domain.scan_model import ScanTarget
from tdsync.domain.scan_rules import changed
from tdsync.services import connection_lease
from tdsync.sources.fingerprints import fingerprint_tables
from tdsync.store import CatalogueStore, lease_expiry

WEBHOOK_TRIGGER = "webhook"


def request_scan(
    store: CatalogueStore,
    settings: Settings,
    *,
    db_connection_id: str | None = None,
    ids: list[str] | None = None,
    table_names: list[str] | None = None,
    changed_only: bool = False,
    refresh: Callable[[str], object] | None = None,
) -> list[TableDescription]:
    """Mark the requested descriptions SYNCHRONIZING and start their scan; returns them.

    A connection that has no description to scan yet, or lacks a named table, is refreshed
    first (when `refresh` is given): a scan right after registering a connection scans it.
    `changed_only` narrows the request to the tables tdsync.domain.scan_rules picks, decided here
    because the rows are claimed before the run starts.
    """
    if db_connection_id is None:
        groups: dict[str, list[ScanTarget]] = {}
        for target in store.scan_targets(ids=ids, table_names=table_names):
            groups.setdefault(target.db_connection_id, []).append(target)
        if changed_only:
            groups = {c: _changed(store, settings, c, group) for c, group in groups.items()}
        return [
            desc
            for connection_id, group in groups.items()
            for desc in _claim_and_start(
                store, settings, connection_id, [t.id for t in group], table_names
            )
        ]

    connection_id = store.get_connection(db_connection_id).id
    may_refresh = refresh is not None and ids is None
    try:
        chosen = _chosen(store, settings, connection_id, ids, table_names, changed_only)
    except TableDescriptionNotFound:
        if not may_refresh:
            raise
        chosen = []
    claimed = _claim_and_start(store, settings, connection_id, chosen, table_names)
    if claimed or not may_refresh:
        return claimed
    # Nothing to scan yet, or a named table is new to the catalogue: list tables, try again.
    refresh(connection_id)
    chosen = _chosen(store, settings, connection_id, ids, table_names, changed_only)
    return _claim_and_start(store, settings, connection_id, chosen, table_names)


def _chosen(
    store: CatalogueStore,
    settings: Settings,
    connection_id: str,
    ids: list[str] | None,
    table_names: list[str] | None,
    changed_only: bool,
) -> list[str] | None:
    """The ids a request names (None: all of the connection's), unknown ones refused."""
    if ids is None and not table_names and not changed_only:
        return None
    targets = store.scan_targets(connection_id=connection_id, ids=ids, table_names=table_names)
    if changed_only:
        targets = _changed(store, settings, connection_id, targets)
    return [t.id for t in targets]


def _changed(
    store: CatalogueStore, settings: Settings, connection_id: str, targets: list[ScanTarget]
) -> list[ScanTarget]:
    """What a changed-only scan of `targets` re-reads: one catalog query per schema."""
    live = fingerprint_tables(
        store.connection_uri(connection_id),
        [(t.schema_name, t.table_name) for t in targets],
        timeout_s=settings.source_timeout_s,
        ssh=store.ssh_settings(connection_id),
        settings=settings,
    )
    max_age_s = store.get_connection(connection_id).data_max_age_s
    return changed(targets, live, utcnow(), max_age_s)


def _claim_and_start(
    store: CatalogueStore,
    settings: Settings,
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
        if deployment() == "local":
            start_detached_scan(
                store, settings, connection_id=connection_id, run_id=run_id, **asked
            )
        else:
            # The instance's queue, launcher and run monitoring take it from here; the
            # run-failure sensor settles its rows if it fails before scanning them.
            from tdsync.defs import runs

            runs.submit_scan(
                connection_id, trigger=WEBHOOK_TRIGGER, run_id=run_id, settings=settings, **asked
            )
    except (OSError, dg.DagsterError) as exc:  # no run could be started: say so on the rows now
        store.fail_synchronizing(
            connection_id,
            error_message=f"the scan run could not be started: {getattr(exc, 'strerror', None) or exc}",
            scan_run_id=run_id,
        )
        return store.claimed_descriptions(connection_id, run_id)
    return claimed


def start_detached_scan(
    store: CatalogueStore,
    settings: Settings,
    *,
    connection_id: str,
    run_id: str,
    table_names: list[str] | None = None,
    description_ids: list[str] | None = None,
) -> subprocess.Popen:
    """Start the scan run in its own process and session; returns at once."""
    folder = settings.home / "scans"
    folder.mkdir(parents=True, exist_ok=True)
    request = folder / f"{run_id}.json"
    request.write_text(
        json.dumps(
            {
                "db_connection_id": connection_id,
                "run_id": run_id,
                "table_names": table_names,
                "description_ids": description_ids,
            }
        )
    )
    with open(folder / "scan-runs.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tdsync.services.scan_requests", str(request)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=_child_env(settings),
            start_new_session=True,  # an API stopped with Ctrl-C does not take the scan with it
        )
    threading.Thread(
        target=_settle_when_done,
        args=(process, store, connection_id, run_id),
        name=f"tdsync-scan-{run_id[:8]}",
        daemon=True,
    ).start()
    return process


def _settle_when_done(
    process: subprocess.Popen, store: CatalogueStore, connection_id: str, run_id: str
) -> None:
    # Also reaps the child, so no zombie is left behind in a long-running API.
    code = process.wait()
    if code != 0:
        # If the store is down, the lease settles these rows later.
        with contextlib.suppress(TdsyncError):
            store.fail_synchronizing(
                connection_id,
                error_message=f"scan run {run_id} ended before finishing (exit code {code})",
                scan_run_id=run_id,
            )
        # A run killed before it let go of the connection's lease would hold up the next
        # refresh or scan of the connection until the lease expires. (A no-op if it did.)
        with contextlib.suppress(TdsyncError):
            connection_lease.release(store, run_id, succeeded=False)


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    values = {
        "TDSYNC_HOME": str(settings.home),
        "TDSYNC_MONGO_URI": settings.mongo_uri,
        "TDSYNC_MONGO_DB": settings.mongo_db,
        "TDSYNC_ENCRYPTION_KEY": settings.encryption_key,
        "DAGSTER_HOME": str(settings.dagster_home),
        "TDSYNC_SOURCE_TIMEOUT_S": str(settings.source_timeout_s),
        "TDSYNC_SCAN_LEASE_S": str(settings.scan_lease_s),
        "TDSYNC_SCAN_STALL_S": str(settings.scan_stall_s),
    }
    env.update({k: v for k, v in values.items() if v is not None})
    return env


def main(argv: list[str] | None = None) -> int:
    """The detached process: run the scan job for one request file, then delete the file."""
    from tdsync.defs import runs
    from tdsync.store.client import shared_store

    settings = Settings.from_env()  # the environment _child_env gave this process
    path = Path((argv if argv is not None else sys.argv[1:])[0])
    request = json.loads(path.read_text())
    path.unlink(missing_ok=True)
    try:
        summary = runs.scan(
            request["db_connection_id"],
            trigger=WEBHOOK_TRIGGER,
            table_names=request.get("table_names"),
            description_ids=request.get("description_ids"),
            run_id=request["run_id"],
            settings=settings,
        )
    except TdsyncError as exc:
        # E.g. the connection stayed busy, or the source is unreachable: nothing may stay
        # SYNCHRONIZING because of it.
        shared_store(settings).fail_synchronizing(
            request["db_connection_id"],
            error_message=f"scan failed: {exc.message}",
            scan_run_id=request["run_id"],
        )
        print(f"scan run {request['run_id']}: {exc.error_code}: {exc.message}", file=sys.stderr)
        return 1
    print(f"scan run {request['run_id']}: {json.dumps(summary)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
