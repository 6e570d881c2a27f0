"""Domain layer: Which tables a changed-only scan re-reads. No I/O: each way of starting a scan (the scan job,
sync-schemas) reads the live fingerprints (tdsync.sources.fingerprints) and asks `changed`.

A table is re-read when it was never scanned, its last scan FAILED, its structural fingerprint
(tdsync.sources.fingerprints) differs from the one its last scan recorded, or its data (categories,
examples) is older than the connection's `data_max_age`; the others stay as they are.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tdsync.domain.models import Status
from tdsync.domain.scan_model import Fingerprints, ScanTarget

DATA_MAX_AGE = timedelta(days=7)


def needs_scan(
    target: ScanTarget,
    live_fingerprint: str | None,
    now: datetime,
    data_max_age: timedelta = DATA_MAX_AGE,
) -> bool:
    return (
        target.last_schema_sync is None
        or target.status in (Status.NOT_SCANNED, Status.FAILED)
        or target.fingerprint is None
        or target.fingerprint != live_fingerprint
        or now - target.last_schema_sync > data_max_age
    )


def changed(
    targets: list[ScanTarget], live: Fingerprints, now: datetime, data_max_age_s: int
) -> list[ScanTarget]:
    """The targets a changed-only scan re-reads, given the live fingerprints of their tables."""
    max_age = timedelta(seconds=data_max_age_s)
    return [
        t for t in targets if needs_scan(t, live.get((t.schema_name, t.table_name)), now, max_age)
    ]
