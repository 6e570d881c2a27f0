"""Services layer: a scan's steps, in the order the scan job's ops call them.

Claim the requested rows for the run (SYNCHRONIZING, after failing the rows of dead scans), then
scan them from the source and settle each SCANNED or FAILED as it finishes, saving in batches
(tdsync.services.scan_recorder) so a run killed half-way keeps what it did. The ops
(tdsync.defs.scan_job) add Dagster's logging, metadata and failures around these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tdsync.config.settings import Settings
from tdsync.domain.errors import TdsyncError
from tdsync.domain.scan_model import ScanOptions, ScanTarget
from tdsync.domain.scan_rules import changed
from tdsync.services import connection_lease
from tdsync.services.connections import ConnectionRef
from tdsync.services.scan_recorder import ScanRecorder
from tdsync.sources.fingerprints import fingerprint_tables
from tdsync.sources.scanner import scan_tables
from tdsync.store import CatalogueStore, lease_expiry

Log = Callable[[str], None]


@dataclass(frozen=True)
class Claimed:
    """The rows a scan run holds, how many rows of dead scans were failed first, and (for a
    changed-only scan) how many named tables were left as they are."""

    targets: list[ScanTarget]
    expired_leases: int
    unchanged: int | None = None


def claim(
    store: CatalogueStore,
    connection: ConnectionRef,
    *,
    run_id: str,
    description_ids: list[str] | None,
    table_names: list[str] | None,
    changed_only: bool,
    data_max_age_s: int | None,
    lease_s: float,
    settings: Settings,
    now: datetime,
) -> Claimed:
    """Fail the rows of dead scans, then mark the requested rows SYNCHRONIZING for run `run_id`:
    those named (ids, table names), else every row of the connection not DEPRECATED; a
    changed-only claim keeps only those tdsync.domain.scan_rules picks (`data_max_age_s`: None
    is the connection's)."""
    expired = store.expire_scan_leases(connection.id, now)
    ids = None  # all of the connection's
    unchanged = None
    if description_ids is not None or table_names or changed_only:
        named = store.scan_targets(
            connection_id=connection.id, ids=description_ids, table_names=table_names
        )
        ids = [t.id for t in named]
        if changed_only:
            max_age_s = connection.data_max_age_s if data_max_age_s is None else data_max_age_s
            picked = changed_targets(
                store, connection.id, named, max_age_s=max_age_s, now=now, settings=settings
            )
            ids = [t.id for t in picked]
            unchanged = len(named) - len(ids)
    targets = store.claim_for_scan(
        connection.id, ids, run_id=run_id, lease_expires_at=lease_expiry(now, lease_s)
    )
    return Claimed(targets, expired, unchanged)


def changed_targets(
    store: CatalogueStore,
    connection_id: str,
    targets: list[ScanTarget],
    *,
    max_age_s: int,
    now: datetime,
    settings: Settings,
) -> list[ScanTarget]:
    """The targets a changed-only scan re-reads (tdsync.domain.scan_rules), from one read of the
    connection and one catalog query per schema."""
    uri, ssh = store.source_access(connection_id)
    live = fingerprint_tables(
        uri,
        [(t.schema_name, t.table_name) for t in targets],
        timeout_s=settings.source_timeout_s,
        ssh=ssh,
        settings=settings,
    )
    return changed(targets, live, now, max_age_s)


def scan_claimed(
    store: CatalogueStore,
    connection_id: str,
    run_id: str,
    targets: list[ScanTarget],
    options: ScanOptions,
    *,
    lease_s: float,
    settings: Settings,
    log: Log,
    warn: Log,
    error: Log,
) -> ScanRecorder:
    """Scan the claimed tables (bounded parallelism) and settle each SCANNED or FAILED as it
    finishes; returns the recorder (summary, drift, failures).

    A scan that stops (the source unreachable, the store down, the run stopped) keeps what it
    scanned, fails the rows it still holds and frees the connection, then raises what stopped it.
    """
    recorder = ScanRecorder(
        store, connection_id, run_id, len(targets), lease_s=lease_s, log=log, warn=warn
    )
    try:
        with recorder:
            uri, ssh = store.source_access(connection_id)
            for result in scan_tables(
                uri,
                targets,
                options=options,
                timeout_s=settings.source_timeout_s,
                stall_s=settings.scan_stall_s,
                ssh=ssh,
                settings=settings,
            ):
                recorder.add(result)
            recorder.save()
    except TdsyncError as exc:  # the source cannot be reached at all, or the store is down
        reason = exc.detail.get("reason") if isinstance(exc.detail, dict) else None
        _fail_the_rest(
            store, connection_id, run_id, recorder, f"scan failed: {exc.message}", reason, error
        )
        raise
    except BaseException as exc:
        _fail_the_rest(
            store, connection_id, run_id, recorder, "scan stopped", type(exc).__name__, error
        )
        raise
    return recorder


def _fail_the_rest(
    store: CatalogueStore,
    connection_id: str,
    run_id: str,
    recorder: ScanRecorder,
    message: str,
    reason: str | None,
    error: Log,
) -> None:
    """Keep what was scanned; every row the run still holds becomes FAILED with its error, and
    the connection is free for its next run at once.

    Best effort: with the store down, the rows' lease settles them later, and the run fails
    with its own error rather than this one's.
    """
    message = f"{message}: {reason}" if reason else message
    try:
        recorder.save()
        failed = store.fail_synchronizing(connection_id, error_message=message, scan_run_id=run_id)
        error(f"{message}; {failed} unscanned description(s) marked FAILED")
        connection_lease.release(store, run_id, succeeded=False)
    except TdsyncError as exc:
        error(f"{message}; its rows could not be settled now: {exc.message}")
