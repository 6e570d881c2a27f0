"""Store layer: the scans repository: the SYNCHRONIZING lifecycle of a scan's rows: claim,
renew, settle (SCANNED or FAILED), expire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection

from tdsync.domain.errors import TableDescriptionNotFound, ValidationFailed
from tdsync.domain.models import Status, TableDescription, TableType, as_utc, utcnow
from tdsync.domain.scan_model import SavedScans, ScanTarget, TableScan
from tdsync.store.common import (
    chunked,
    described,
    lease_expired,
    lease_over,
    object_id,
    storage_errors,
)
from tdsync.store.connections import Connections
from tdsync.store.scan_writes import (
    claim_rows,
    claim_rows_by_id,
    save_chunk,
)
from tdsync.store.versions import CatalogueVersions


class Scans:
    """A scan marks its rows SYNCHRONIZING under its run id (`scan_run_id`) with a lease
    (`scan_lease_expires_at`), renews the lease while it works and settles each row SCANNED or
    FAILED with a write conditional on the row still being SYNCHRONIZING under that run id: a row
    that a newer scan took over, or that a refresh expired meanwhile, is left alone.

    The rows are `table_descriptions`'; its writes change the catalogue version (`versions`)."""

    def __init__(
        self, collection: Collection, versions: CatalogueVersions, connections: Connections
    ) -> None:
        self.collection = collection
        self.versions = versions
        self.connections = connections

    def expire_scan_leases(self, connection_id: str, now: datetime) -> int:
        """A connection's rows SYNCHRONIZING past their lease (a scan died) become FAILED."""
        docs = self._past_lease(connection_id, now, {"scan_lease_expires_at": 1})
        ops = [lease_expired(d["_id"], d.get("scan_lease_expires_at"), now) for d in docs]
        if not ops:
            return 0
        with storage_errors(), self.versions.changing_catalogue(connection_id):
            return self.collection.bulk_write(ops, ordered=False).modified_count

    def scans_past_lease(self, connection_id: str, now: datetime) -> list[str]:
        """A connection's SYNCHRONIZING descriptions whose scan lease has run out (schema.table)."""
        docs = self._past_lease(connection_id, now, {"schema_name": 1, "table_name": 1})
        return sorted(f"{d['schema_name']}.{d['table_name']}" for d in docs)

    def _past_lease(
        self, connection_id: str, now: datetime, fields: dict[str, int]
    ) -> list[dict[str, Any]]:
        # The lease is tested here, not in the query: SecantusDB does not use the
        # (connection, status) index for a query with an `$or`, and reads every document.
        # Measured (SecantusDB 0.7.0b3, 2 cores at load 3.4-4.3, 10,000 rows, 1,000 of the
        # connection, 100 SYNCHRONIZING): 0.15-0.23 s with the `$or` in the query, 5-13 ms this
        # way. MongoDB filters the same index range either way (the rows SYNCHRONIZING are few).
        query = {"db_connection_id": connection_id, "status": Status.SYNCHRONIZING.value}
        with storage_errors():
            docs = self.collection.find(query, {**fields, "scan_lease_expires_at": 1})
            return [d for d in docs if lease_over(d.get("scan_lease_expires_at"), now)]

    def scan_targets(
        self,
        *,
        connection_id: str | None = None,
        ids: list[str] | None = None,
        table_names: list[str] | None = None,
    ) -> list[ScanTarget]:
        """The descriptions a scan request names, sorted by (schema_name, table_name).

        By ids (of one connection when `connection_id` is given) or all of a connection's; then
        narrowed to `table_names` (`table` or `schema.table`). An unknown id, or a name that
        matches nothing, raises TableDescriptionNotFound naming them. DEPRECATED rows (their
        table is gone) are never scanned and are left out.
        """
        fields = {k: 1 for k in ("db_connection_id", "schema_name", "table_name", "table_type")}
        fields.update(status=1, fingerprint=1, last_schema_sync=1)
        query: dict[str, Any] = {}
        if connection_id is not None:
            query["db_connection_id"] = connection_id
        names = list(dict.fromkeys(table_names or []))
        if ids is not None:
            oids = list(dict.fromkeys(object_id(i, what="table description id") for i in ids))
            query["_id"] = {"$in": oids}
        elif connection_id is None:
            raise ValidationFailed("a scan needs db_connection_id or ids")
        elif names:
            # `a.b.c` is table `a.b.c`, or table `b.c` of schema `a`, or `c` of schema `a.b`.
            query["table_name"] = {"$in": sorted({n for x in names for n in _suffixes(x)})}
        with storage_errors():
            docs = list(self.collection.find(query, fields, batch_size=100_000))
        if ids is not None:
            found = {d["_id"] for d in docs}
            missing = [str(o) for o in oids if o not in found]
            if missing:
                raise TableDescriptionNotFound(
                    f"table description(s) not found: {', '.join(missing)}", {"ids": missing}
                )
        if names:
            # Not a filter for speed: the query found every row whose table name a name may mean;
            # which of them it does mean (`b.c` as a table, or table `c` of schema `b`) is this.
            wanted = set(names)
            docs = [d for d in docs if wanted & {d["table_name"], _qualified(d)}]
            seen = {d["table_name"] for d in docs} | {_qualified(d) for d in docs}
            missing = [n for n in names if n not in seen]
            if missing:
                raise TableDescriptionNotFound(
                    f"no table description for table(s) {', '.join(map(repr, missing))} "
                    "(a refresh adds new tables)",
                    {"table_names": missing},
                )
        targets = [
            ScanTarget(
                id=str(d["_id"]),
                db_connection_id=d["db_connection_id"],
                schema_name=d["schema_name"],
                table_name=d["table_name"],
                table_type=TableType(d.get("table_type") or TableType.TABLE),
                status=Status(d["status"]),
                fingerprint=d.get("fingerprint"),
                last_schema_sync=as_utc(d.get("last_schema_sync")),
            )
            for d in docs
            if d["status"] != Status.DEPRECATED.value
        ]
        return sorted(targets, key=lambda t: (t.db_connection_id, t.schema_name, t.table_name))

    def claim_for_scan(
        self,
        connection_id: str,
        ids: list[str] | None,
        *,
        run_id: str,
        lease_expires_at: datetime,
    ) -> list[ScanTarget]:
        """Mark rows SYNCHRONIZING for a scan run (mark_for_scan) and return exactly the rows the
        run holds, sorted by (schema_name, table_name)."""
        self.mark_for_scan(connection_id, ids, run_id=run_id, lease_expires_at=lease_expires_at)
        fields = {k: 1 for k in ("schema_name", "table_name", "table_type", "status")}
        fields["last_schema_sync"] = 1
        with storage_errors():
            docs = self._held_rows(connection_id, run_id, fields)
            targets = [
                ScanTarget(
                    id=str(d["_id"]),
                    db_connection_id=connection_id,
                    schema_name=d["schema_name"],
                    table_name=d["table_name"],
                    table_type=TableType(d.get("table_type") or TableType.TABLE),
                    status=Status(d["status"]),
                    scanned_before=d.get("last_schema_sync") is not None,
                )
                for d in docs
            ]
        return sorted(targets, key=lambda t: (t.schema_name, t.table_name))

    def mark_for_scan(
        self,
        connection_id: str,
        ids: list[str] | None,
        *,
        run_id: str,
        lease_expires_at: datetime,
    ) -> None:
        """Mark rows SYNCHRONIZING under a scan run (taking them over from any earlier scan):
        these ids, or every row of the connection that is not DEPRECATED."""
        claim = {
            "$set": {
                "status": Status.SYNCHRONIZING.value,
                "error_message": None,
                "scan_run_id": run_id,
                "scan_lease_expires_at": lease_expires_at,
            }
        }
        scannable = {"db_connection_id": connection_id, "status": {"$ne": Status.DEPRECATED.value}}
        # Rows this run holds already (request_scan claims them before it starts the run, whose
        # first step claims again) with half their lease left are not written again: the store
        # pays ~0.4 ms per row written, 4-6 s for 10,000 rows.
        now = utcnow()
        scannable["$or"] = [
            {"scan_run_id": {"$ne": run_id}},
            {"status": {"$ne": Status.SYNCHRONIZING.value}},
            {"scan_lease_expires_at": {"$lt": now + (lease_expires_at - now) / 2}},
        ]
        with storage_errors(), self.versions.changing_catalogue(connection_id):
            if ids is None:
                claim_rows(self.collection, scannable, claim)
            else:
                # One update by _id alone each (the ids are the connection's: callers read them
                # from its rows), the rows already held found beforehand: SecantusDB uses no
                # index for an `_id: {$in}` update_many nor for an `$or`, and for a filter on the
                # connection it scans the connection's rows (1,000 of 10,000 rows: 49 s that
                # way), which a changed-only scan of many changed tables would pay.
                held = self._held(connection_id, run_id, now + (lease_expires_at - now) / 2)
                todo = [oid for oid in dict.fromkeys(map(ObjectId, ids)) if oid not in held]
                by_id = {"status": {"$ne": Status.DEPRECATED.value}}
                for chunk in chunked(todo):  # see chunked() for the measurement
                    claim_rows_by_id(self.collection, by_id, claim, chunk)

    def _held(self, connection_id: str, run_id: str, until: datetime) -> set[ObjectId]:
        """The rows `run_id` holds with a lease lasting past `until`."""
        docs = self._held_rows(connection_id, run_id, {"scan_lease_expires_at": 1})
        return {d["_id"] for d in docs if not lease_over(d.get("scan_lease_expires_at"), until)}

    def _held_rows(
        self, connection_id: str, run_id: str, fields: dict[str, int]
    ) -> list[dict[str, Any]]:
        """The rows `run_id` holds (SYNCHRONIZING under it), with `fields`.

        The run id is tested here, not in the query: SecantusDB uses the (connection, status)
        index only for a filter on exactly those fields, and with `scan_run_id` added it reads
        every row of the collection (0.9 s for 10,000 rows, twice per claim, whatever the claim's
        size; 1 ms this way when the connection has few rows SYNCHRONIZING)."""
        query = {"db_connection_id": connection_id, "status": Status.SYNCHRONIZING.value}
        docs = self.collection.find(query, {**fields, "scan_run_id": 1}, batch_size=100_000)
        return [d for d in docs if d.get("scan_run_id") == run_id]

    def renew_scan_lease(self, connection_id: str, run_id: str, lease_expires_at: datetime) -> int:
        """Push back the lease of the rows a live scan run still holds."""
        with storage_errors():
            result = self.collection.update_many(
                {
                    "db_connection_id": connection_id,
                    "scan_run_id": run_id,
                    "status": Status.SYNCHRONIZING.value,
                },
                {"$set": {"scan_lease_expires_at": lease_expires_at}},
            )
        return result.modified_count

    def save_scans(self, run_id: str, scans: list[TableScan], now: datetime) -> SavedScans:
        """Settle scanned rows SCANNED (people's fields merged in, drift recorded) or FAILED.

        Each row is read, merged and written back on the condition that its columns did not
        change meanwhile (a person describing a column during the scan); such a row is merged
        again, so nobody's edit is lost. Every write is conditional on the row still being held
        by this run; rows a newer scan took over are left alone and not counted.
        """
        saved = SavedScans()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as stored: milliseconds
        connections = sorted({scan.target.db_connection_id for scan in scans})
        with self.versions.changing_catalogue(*connections, before=False):
            for chunk in chunked(scans):  # `$in` reads and bulk writes: see chunked()
                save_chunk(self.collection, run_id, chunk, now, saved)
        return saved

    def claimed_descriptions(self, connection_id: str, run_id: str) -> list[TableDescription]:
        """The descriptions a scan run holds, sorted by (schema_name, table_name)."""
        refreshed = self.connections.refreshed_at(connection_id)
        with storage_errors():
            docs = self.collection.find(
                {"db_connection_id": connection_id, "scan_run_id": run_id},
                {"scan_lease_expires_at": 0},
            )
            return described(docs, refreshed)

    def fail_synchronizing(
        self, connection_id: str, *, error_message: str, scan_run_id: str | None = None
    ) -> int:
        """Mark a connection's SYNCHRONIZING descriptions FAILED.

        Given a scan run, only its rows and rows no run has claimed (`scan_run_id` unset) change:
        rows another scan request marked meanwhile are that request's to settle.
        """
        query: dict[str, Any] = {
            "db_connection_id": connection_id,
            "status": Status.SYNCHRONIZING.value,
        }
        if scan_run_id is not None:
            query["scan_run_id"] = {"$in": [scan_run_id, None]}
        with storage_errors(), self.versions.changing_catalogue(connection_id):
            result = self.collection.update_many(
                query,
                {
                    "$set": {"status": Status.FAILED.value, "error_message": error_message},
                    "$unset": {"scan_lease_expires_at": ""},
                },
            )
        return result.modified_count


def _suffixes(name: str) -> list[str]:
    """`a.b.c` -> [`a.b.c`, `b.c`, `c`]: the table names a maybe-qualified name can mean."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


def _qualified(doc: dict[str, Any]) -> str:
    return f"{doc['schema_name']}.{doc['table_name']}"
