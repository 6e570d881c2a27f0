"""Per-connection run leases (one refresh or scan of a connection at a time) and status counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from tdsync.domain.models import Status
from tdsync.store.base import LEASES, StoreBase, lease_expiry, storage_errors


class LeasesMixin(StoreBase):
    """One lease document per connection ({_id: connection id}) says which run may refresh or scan
    it; a holder that dies stops renewing and its lease expires. Releasing keeps the document and
    records the holder's outcome under `last`, so a caller that waited can use its result."""

    def acquire_connection_lease(
        self, connection_id: str, *, holder: str, kind: str, ttl_s: float, now: datetime
    ) -> bool:
        """Take (or, for its holder, extend) a connection's lease; False while another holds it."""
        free = [{"holder": None}, {"holder": holder}, {"expires_at": {"$lte": now}}]
        with storage_errors():
            try:
                self._journaled_leases.update_one(
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
            result = self.db[LEASES].update_one(
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
            result = self._journaled_leases.update_many(
                {"holder": holder},
                {"$set": {"holder": None, "expires_at": None, "last": last}},
            )
        return result.modified_count

    def connection_lease(self, connection_id: str) -> dict[str, Any] | None:
        with storage_errors():
            return self.db[LEASES].find_one({"_id": connection_id})

    def status_counts(self, connection_id: str) -> dict[str, int]:
        """How many of a connection's descriptions have each status (index-backed counts)."""
        return {
            status.value: self.descriptions_with_status(connection_id, status) for status in Status
        }

    def descriptions_with_status(self, connection_id: str, status: Status) -> int:
        with storage_errors():
            return self.descriptions.count_documents(
                {"db_connection_id": connection_id, "status": Status(status).value}
            )

    def failed_descriptions(self, connection_id: str, *, limit: int = 20) -> dict[str, str]:
        """Some of a connection's FAILED descriptions: {schema.table: error_message}."""
        query = {"db_connection_id": connection_id, "status": Status.FAILED.value}
        fields = {"schema_name": 1, "table_name": 1, "error_message": 1}
        with storage_errors():
            docs = self.descriptions.find(query, fields).limit(limit)
            return {
                f"{d['schema_name']}.{d['table_name']}": d.get("error_message") or "" for d in docs
            }
