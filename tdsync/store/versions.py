"""The catalogue version of each connection: how a warm refresh proves nothing changed (issue 18).

One small document per connection, `{_id: connection id, version, refreshed}`. Every write that
can change a description's key, status or kind (a refresh's plan, a scan's claim and settling,
expired leases, failed scans) bumps `version` before it writes and again after, even when it
fails; a refresh's read of this document is its bump before. A refresh records what its plan
leaves (`refreshed`, a CatalogueSnapshot) only if the version is still the one its read left
(plus its own bump after, if it wrote), i.e. nobody else wrote between its read and its writes.
The next refresh reads (and bumps) this one document: a snapshot at the version before its bump,
the same live listing, and no scan lease run out since, mean its plan is empty, without reading
the 100,000 rows (8.6-10.3 s on SecantusDB); it records the snapshot again at its version.
Anything else (no document, another version, another listing) is the full read, so a lost or
stale document costs time, never correctness.

The bump before a write makes a snapshot recorded earlier stale before the rows change; the bump
after, one recorded while they changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import ReturnDocument

from tdsync.models import as_utc
from tdsync.refresh import CatalogueSnapshot
from tdsync.store.base import VERSIONS, StoreBase, storage_errors


class VersionsMixin(StoreBase):
    def catalogue_version(self, connection_id: str) -> tuple[int, CatalogueSnapshot | None]:
        """A refresh's first read: bumps the connection's catalogue version (the bump before
        whatever the refresh writes) and returns it, with the snapshot the last refresh recorded:
        that snapshot still holds if its version is this one minus our bump."""
        with storage_errors():
            doc = self.db[VERSIONS].find_one_and_update(
                {"_id": connection_id},
                {"$inc": {"version": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        return doc["version"], _snapshot(doc.get("refreshed"))

    @contextmanager
    def changing_catalogue(
        self, *connection_ids: str, then: CatalogueSnapshot | None = None
    ) -> Iterator[None]:
        """Bump these connections' catalogue versions before and after a write of their
        descriptions. With `then`, a refresh's snapshot (its read bumped the version already),
        the bump after also records it, if nobody else wrote since that read."""
        versions = self.db[VERSIONS]
        if then is None:
            with storage_errors():
                for cid in connection_ids:
                    versions.update_one({"_id": cid}, {"$inc": {"version": 1}}, upsert=True)
        succeeded = False
        try:
            yield
            succeeded = True
        finally:
            with storage_errors():
                for cid in connection_ids:
                    recorded = False
                    if succeeded and then is not None:
                        recorded = self._record(cid, then, bump=True)
                    if not recorded:
                        versions.update_one({"_id": cid}, {"$inc": {"version": 1}})

    def record_snapshot(self, connection_id: str, snapshot: CatalogueSnapshot | None) -> bool:
        """Record what a refresh that wrote nothing found, if the version is still the one its
        read left; False when another writer came first (the next refresh reads in full)."""
        if snapshot is None:
            return False
        with storage_errors():
            return self._record(connection_id, snapshot, bump=False)

    def _record(self, connection_id: str, snapshot: CatalogueSnapshot, *, bump: bool) -> bool:
        holds_at = snapshot.version + 1 if bump else snapshot.version
        update: dict[str, Any] = {"$set": {"refreshed": _doc(snapshot, holds_at)}}
        if bump:
            update["$inc"] = {"version": 1}
        result = self.db[VERSIONS].update_one(
            {"_id": connection_id, "version": snapshot.version}, update
        )
        return result.matched_count == 1


def _doc(snapshot: CatalogueSnapshot, version: int) -> dict[str, Any]:
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
