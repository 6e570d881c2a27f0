"""Store layer: the catalogue version of each connection: how a warm refresh proves nothing
changed (issue 18).

One small document per connection, `{_id: connection id, version, refreshed}`. Every write that
can change a description's key, status or kind (a refresh's plan, a scan's claim and settling,
expired leases, failed scans) gives `version` a new value (a "bump") before it writes and again
after, even when it fails (a scan saving the rows it holds: after only, see
`changing_catalogue`); a refresh's read of this document is its bump before. A refresh
records what its plan leaves (`refreshed`, a CatalogueSnapshot) only if the version is still the
one its read gave, i.e. nobody else wrote between its read and its writes. The next refresh reads
(and bumps) this one document: a snapshot at the version it replaced, the same live listing and
no scan lease run out since mean its plan is empty, without reading the 100,000 rows (8.6-10.3 s
on SecantusDB); it records the snapshot again at its own version.
Anything else (no document, another version, another listing) is the full read, so a lost or
stale document costs time, never correctness.

The bump before a write makes a snapshot recorded earlier stale before the rows change; the bump
after, one recorded while they changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo.collection import Collection

from tdsync.domain.models import as_utc
from tdsync.domain.refresh_rules import CatalogueSnapshot
from tdsync.store.common import storage_errors


class CatalogueVersions:
    """The `catalogue_versions` collection: one document per connection."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection

    def catalogue_version(self, connection_id: str) -> tuple[str, CatalogueSnapshot | None]:
        """A refresh's first read: gives the connection's catalogue a new version (the bump before
        whatever the refresh writes) and returns it, with the snapshot the last refresh recorded
        if it still held, i.e. nobody wrote after it."""
        version = _new_version()
        with storage_errors():
            before = self.collection.find_one_and_update(
                {"_id": connection_id}, {"$set": {"version": version}}, upsert=True
            )
        known = _snapshot((before or {}).get("refreshed"))
        if known is None or known.version != before.get("version"):
            return version, None
        return version, known

    @contextmanager
    def changing_catalogue(
        self, *connection_ids: str, then: CatalogueSnapshot | None = None, before: bool = True
    ) -> Iterator[None]:
        """Give these connections' catalogues a new version before and after a write of their
        descriptions. With `then`, a refresh's snapshot (its read gave the version before), the
        version after also records it, if nobody else wrote since that read.

        `before=False` is for a write that only settles rows a scan holds (SYNCHRONIZING ->
        SCANNED or FAILED): a snapshot that still shows them SYNCHRONIZING plans nothing else and
        keeps their lease expiry, past which the next refresh reads in full anyway; only its counts
        by status would be stale, and the bump after makes it stale. This saves a round trip per
        saved batch (200 for a scan of 10,000 tables)."""
        if then is None and before:
            self._bump(connection_ids)
        succeeded = False
        try:
            yield
            succeeded = True
        finally:
            if not (succeeded and then is not None and self._record(connection_ids[0], then)):
                self._bump(connection_ids)

    def record_snapshot(self, connection_id: str, snapshot: CatalogueSnapshot | None) -> bool:
        """Record what a refresh that wrote nothing found, if the version is still the one its
        read gave; False when another writer came first (the next refresh reads in full)."""
        if snapshot is None:
            return False
        return self._record(connection_id, snapshot, wrote=False)

    def forget(self, connection_id: str) -> None:
        """Delete a connection's document (the connection is deleted)."""
        with storage_errors():
            self.collection.delete_one({"_id": connection_id})

    def _bump(self, connection_ids: tuple[str, ...]) -> None:
        with storage_errors():
            for cid in connection_ids:
                self.collection.update_one(
                    {"_id": cid}, {"$set": {"version": _new_version()}}, upsert=True
                )

    def _record(
        self, connection_id: str, snapshot: CatalogueSnapshot, *, wrote: bool = True
    ) -> bool:
        # A refresh that wrote gives the catalogue a new version, at which its snapshot holds.
        holds_at = _new_version() if wrote else snapshot.version
        with storage_errors():
            result = self.collection.update_one(
                {"_id": connection_id, "version": snapshot.version},
                {"$set": {"version": holds_at, "refreshed": _doc(snapshot, holds_at)}},
            )
        return result.matched_count == 1


def _new_version() -> str:
    # Never a counter: a version document lost and made again must not repeat an old version,
    # which a refresh planned before the loss could take for its own.
    return uuid.uuid4().hex


def _doc(snapshot: CatalogueSnapshot, version: str) -> dict[str, Any]:
    return {
        "version": version,
        "listing": snapshot.listing,
        "statuses": snapshot.statuses,
        "lease_expires_first": snapshot.lease_expires_first,
    }


def _snapshot(doc: dict[str, Any] | None) -> CatalogueSnapshot | None:
    if not doc:
        return None
    return CatalogueSnapshot(
        version=doc["version"],
        listing=doc["listing"],
        statuses=dict(doc["statuses"]),
        lease_expires_first=as_utc(doc.get("lease_expires_first")),
    )
