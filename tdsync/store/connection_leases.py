"""Store layer: the per-connection run leases repository (one refresh or scan of a connection at
a time)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import WriteConcern
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from tdsync.store.common import lease_expiry, storage_errors


class ConnectionLeases:
    """One lease document per connection ({_id: connection id}) says which run may refresh or scan
    it; a holder that dies stops renewing and its lease expires. Releasing keeps the document and
    records the holder's outcome under `last`, so a caller that waited can use its result.
    Taking and releasing a lease are journaled before they are acknowledged."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self._journaled = collection.with_options(write_concern=WriteConcern(j=True))

    def acquire_connection_lease(
        self, connection_id: str, *, holder: str, kind: str, ttl_s: float, now: datetime
    ) -> bool:
        """Take (or, for its holder, extend) a connection's lease; False while another holds it."""
        free = [{"holder": None}, {"holder": holder}, {"expires_at": {"$lte": now}}]
        with storage_errors():
            try:
                self._journaled.update_one(
                    {"_id": connection_id, "$or": free},
                    {
                        "$set": {
                            "holder": holder,
                            "kind": kind,
                            "acquired_at": now,
                            "expires_at": lease_expiry(now, ttl_s),
                        }
                    },
                    upsert=True,
                )
            except DuplicateKeyError:  # the document exists and another holder's lease is live
                return False
        return True

    def renew_connection_lease(
        self, connection_id: str, *, holder: str, ttl_s: float, now: datetime
    ) -> bool:
        with storage_errors():
            result = self.collection.update_one(
                {"_id": connection_id, "holder": holder},
                {"$set": {"expires_at": lease_expiry(now, ttl_s)}},
            )
        return result.matched_count == 1

    def release_connection_leases(
        self, holder: str, *, succeeded: bool, outcome: Any = None, now: datetime
    ) -> int:
        """Release every lease `holder` has, recording how its run ended; returns how many."""
        last = {"holder": holder, "succeeded": succeeded, "outcome": outcome, "released_at": now}
        with storage_errors():
            result = self._journaled.update_many(
                {"holder": holder},
                {"$set": {"holder": None, "expires_at": None, "last": last}},
            )
        return result.modified_count

    def connection_lease(self, connection_id: str) -> dict[str, Any] | None:
        with storage_errors():
            return self.collection.find_one({"_id": connection_id})
