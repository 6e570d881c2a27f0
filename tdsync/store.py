"""The one MongoDB access layer: connections and table descriptions.

A refresh reads a connection's descriptions once (a narrow projection) and writes only what its
plan changes, in one unordered bulk write of conditional updates: a write whose condition no longer
holds (another refresh or a scan got there first) simply matches nothing.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pymongo
from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, InsertOne, MongoClient, ReturnDocument, UpdateOne, WriteConcern
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from tdsync.credentials import Cipher, dialect_of, mask_uri
from tdsync.cron import validate_refresh_schedule
from tdsync.errors import (
    ConnectionNotFound,
    DuplicateAlias,
    InvalidObjectId,
    StorageUnavailable,
    TableDescriptionNotFound,
    ValidationFailed,
)
from tdsync.models import (
    DatabaseConnection,
    Status,
    TableDescription,
    TableType,
    as_utc,
    new_description_doc,
    utcnow,
)
from tdsync.refresh import LEASE_EXPIRED_MESSAGE, RefreshPlan, StoredTable
from tdsync.scan.merge import SCHEMA_CHANGES_KEPT, merge_columns, schema_drift
from tdsync.scan.model import SavedScans, ScanTarget, TableScan

CONNECTIONS = "database_connections"
DESCRIPTIONS = "table_descriptions"
LEASES = "connection_leases"
DUPLICATE_KEY = 11000
_STORED_FIELDS = {
    "schema_name": 1,
    "table_name": 1,
    "table_type": 1,
    "status": 1,
    "scan_lease_expires_at": 1,
}


def object_id(value: str, *, what: str = "id") -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise InvalidObjectId(f"{what} {value!r} is not a valid ObjectId") from None


def mongo_client(uri: str, *, timeout_ms: int = 5000) -> MongoClient:
    return MongoClient(
        uri,
        retryWrites=False,  # SecantusDB slows down with its retry log; MongoDB does not need it here
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 12, 60_000),
        tz_aware=True,
    )


class CatalogueStore:
    def __init__(self, client: MongoClient, db_name: str, cipher: Cipher) -> None:
        self.client = client
        self.db = client[db_name]
        self.cipher = cipher
        self.connections: Collection = self.db[CONNECTIONS]
        self.descriptions: Collection = self.db[DESCRIPTIONS]
        # People's work (connections, the descriptions they write) and the connection lease are
        # journaled before they are acknowledged, so a store that crashes right after answering
        # keeps them (SecantusDB loses up to ~0.5 s of unjournaled writes to a kill -9). What a
        # refresh or scan writes is not: the next run recomputes it.
        journaled = WriteConcern(j=True)
        self._people_connections = self.connections.with_options(write_concern=journaled)
        self._people_descriptions = self.descriptions.with_options(write_concern=journaled)
        self._journaled_leases = self.db.get_collection(LEASES, write_concern=journaled)

    # -- set-up -------------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        with storage_errors():
            self.connections.create_index([("alias", ASCENDING)], unique=True, name="alias_unique")
            self.descriptions.create_index(
                [
                    ("db_connection_id", ASCENDING),
                    ("schema_name", ASCENDING),
                    ("table_name", ASCENDING),
                ],
                unique=True,
                name="connection_schema_table_unique",
            )
            self.descriptions.create_index(
                [("db_connection_id", ASCENDING), ("status", ASCENDING)], name="connection_status"
            )

    def ping(self) -> None:
        with storage_errors():
            self.client.admin.command("ping")

    # -- connections ----------------------------------------------------------------------------

    def add_connection(
        self,
        *,
        alias: str,
        connection_uri: str,
        schemas: list[str] | None = None,
        refresh_schedule: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> DatabaseConnection:
        refresh_schedule = validate_refresh_schedule(refresh_schedule)
        doc = {
            "_id": ObjectId(),
            "alias": alias,
            "dialect": dialect_of(connection_uri),
            "connection_uri": self.cipher.encrypt(connection_uri),
            "schemas": schemas or None,
            "refresh_schedule": refresh_schedule,
            "metadata": metadata,
            "created_at": utcnow(),
            "last_refreshed_at": None,
        }
        with storage_errors():
            try:
                self._people_connections.insert_one(doc)
            except DuplicateKeyError:
                raise DuplicateAlias(
                    f"alias {alias!r} is already taken", {"alias": alias}
                ) from None
        return self._connection(doc)

    def update_connection(self, connection_id: str, **changes: Any) -> DatabaseConnection:
        current = self._connection_doc(connection_id)
        update: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "connection_uri":
                update["dialect"] = dialect_of(value)
                update["connection_uri"] = self.cipher.encrypt(value)
            elif key == "schemas":
                update["schemas"] = value or None
            elif key == "refresh_schedule":
                update[key] = validate_refresh_schedule(value)
            else:
                update[key] = value
        if not update:
            return self._connection(current)
        with storage_errors():
            try:
                doc = self._people_connections.find_one_and_update(
                    {"_id": current["_id"]}, {"$set": update}, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError:
                alias = update.get("alias")
                raise DuplicateAlias(
                    f"alias {alias!r} is already taken", {"alias": alias}
                ) from None
        if doc is None:
            raise ConnectionNotFound(f"database connection {connection_id!r} not found")
        return self._connection(doc)

    def get_connection(self, id_or_alias: str) -> DatabaseConnection:
        return self._connection(self._connection_doc(id_or_alias))

    def list_connections(self) -> list[DatabaseConnection]:
        with storage_errors():
            docs = list(self.connections.find().sort("alias", ASCENDING))
        return [self._connection(d) for d in docs]

    def connection_uri(self, connection_id: str) -> str:
        """The decrypted URI: for opening an engine, never for display."""
        return self.cipher.decrypt(self._connection_doc(connection_id)["connection_uri"])

    def delete_connection(self, connection_id: str) -> None:
        doc = self._connection_doc(connection_id)
        with storage_errors():
            self._people_descriptions.delete_many({"db_connection_id": str(doc["_id"])})
            self._people_connections.delete_one({"_id": doc["_id"]})

    def mark_refreshed(self, connection_id: str, now: datetime) -> None:
        with storage_errors():
            self.connections.update_one(
                {"_id": object_id(connection_id)}, {"$max": {"last_refreshed_at": now}}
            )

    def _connection_doc(self, id_or_alias: str) -> dict[str, Any]:
        query: dict[str, Any] = {"alias": id_or_alias}
        if ObjectId.is_valid(id_or_alias):
            query = {"$or": [{"_id": ObjectId(id_or_alias)}, {"alias": id_or_alias}]}
        with storage_errors():
            doc = self.connections.find_one(query)
        if doc is None:
            raise ConnectionNotFound(
                f"database connection {id_or_alias!r} not found", {"db_connection_id": id_or_alias}
            )
        return doc

    def _connection(self, doc: dict[str, Any]) -> DatabaseConnection:
        return DatabaseConnection.from_doc(
            doc, mask_uri(self.cipher.decrypt(doc["connection_uri"]))
        )

    # -- per-connection run leases and catalogue health (issue 5: triggers) ----------------------
    # One lease document per connection ({_id: connection id}) says which run may refresh or scan
    # it; a holder that dies stops renewing and its lease expires. Releasing keeps the document
    # and records the holder's outcome under `last`, so a caller that waited can use its result.

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
                            "expires_at": now + timedelta(seconds=ttl_s),
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
                {"$set": {"expires_at": now + timedelta(seconds=ttl_s)}},
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

    def scans_past_lease(self, connection_id: str, now: datetime) -> list[str]:
        """A connection's SYNCHRONIZING descriptions whose scan lease has run out (schema.table)."""
        # The lease is tested here, not in the query: SecantusDB does not use the
        # (connection, status) index for a query with an `$or`, and reads every document.
        query = {"db_connection_id": connection_id, "status": Status.SYNCHRONIZING.value}
        fields = {"schema_name": 1, "table_name": 1, "scan_lease_expires_at": 1}
        with storage_errors():
            docs = list(self.descriptions.find(query, fields))
        return sorted(
            f"{d['schema_name']}.{d['table_name']}"
            for d in docs
            if d.get("scan_lease_expires_at") is None or as_utc(d["scan_lease_expires_at"]) <= now
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
        with storage_errors():
            result = self.descriptions.update_many(
                query,
                {
                    "$set": {"status": Status.FAILED.value, "error_message": error_message},
                    "$unset": {"scan_lease_expires_at": ""},
                },
            )
        return result.modified_count

    # -- table descriptions ---------------------------------------------------------------------

    def stored_tables(self, connection_id: str) -> list[StoredTable]:
        """What a refresh needs to know of the catalogue, in one narrow read."""
        with storage_errors():
            docs = self.descriptions.find(
                {"db_connection_id": connection_id}, _STORED_FIELDS, batch_size=100_000
            )
            return [
                StoredTable(
                    id=str(d["_id"]),
                    schema_name=d["schema_name"],
                    table_name=d["table_name"],
                    table_type=TableType(d.get("table_type") or TableType.TABLE),
                    status=Status(d["status"]),
                    lease_expires_at=as_utc(d.get("scan_lease_expires_at")),
                )
                for d in docs
            ]

    def apply_refresh(self, connection_id: str, plan: RefreshPlan, now: datetime) -> int:
        """Write a refresh plan in one unordered bulk write; returns how many documents changed.

        New tables are plain inserts (an insert costs SecantusDB a third of an upsert); one that a
        concurrent refresh inserted first fails on the unique index and is left as it is."""
        ops: list[InsertOne | UpdateOne] = [
            InsertOne(
                new_description_doc(
                    db_connection_id=connection_id,
                    schema_name=table.schema_name,
                    table_name=table.table_name,
                    table_type=table.table_type,
                    now=now,
                )
            )
            for table in plan.inserts
        ]
        for row in plan.deprecations:
            ops.append(
                UpdateOne(
                    {"_id": ObjectId(row.id), "status": {"$ne": Status.DEPRECATED.value}},
                    {"$set": {"status": Status.DEPRECATED.value, "last_refreshed_at": now}},
                )
            )
        for restore in plan.restores:
            ops.append(
                UpdateOne(
                    {"_id": ObjectId(restore.stored.id), "status": Status.DEPRECATED.value},
                    {
                        "$set": {
                            "status": Status.NOT_SCANNED.value,
                            "error_message": None,  # set only while FAILED (SPEC)
                            "table_type": restore.table_type.value,
                            "last_refreshed_at": now,
                        }
                    },
                )
            )
        for retype in plan.retypes:
            ops.append(
                UpdateOne(
                    {"_id": ObjectId(retype.stored.id)},
                    {"$set": {"table_type": retype.table_type.value, "last_refreshed_at": now}},
                )
            )
        for row in plan.expired_leases:
            expiry = row.lease_expires_at.isoformat() if row.lease_expires_at else "unknown"
            ops.append(
                UpdateOne(
                    {
                        "_id": ObjectId(row.id),
                        "status": Status.SYNCHRONIZING.value,
                        "$or": [
                            {"scan_lease_expires_at": {"$lte": now}},
                            {"scan_lease_expires_at": None},
                        ],
                    },
                    {
                        "$set": {
                            "status": Status.FAILED.value,
                            "error_message": LEASE_EXPIRED_MESSAGE.format(expiry=expiry),
                            "last_refreshed_at": now,
                        },
                        "$unset": {"scan_lease_expires_at": ""},
                    },
                )
            )
        if not ops:
            return 0
        with storage_errors():
            try:
                result = self.descriptions.bulk_write(ops, ordered=False)
                return result.modified_count + result.inserted_count
            except BulkWriteError as exc:
                # A concurrent refresh inserted the same table first: the unique index did its job.
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                return exc.details.get("nModified", 0) + exc.details.get("nInserted", 0)

    def list_descriptions(
        self,
        connection_id: str,
        *,
        schema_name: str | None = None,
        table_name: str | None = None,
        status: Status | None = None,
    ) -> list[TableDescription]:
        """A connection's descriptions sorted by (schema_name, table_name)."""
        query: dict[str, Any] = {"db_connection_id": connection_id}
        if schema_name is not None:
            query["schema_name"] = schema_name
        if table_name is not None:
            query["table_name"] = table_name
        if status is not None:
            query["status"] = Status(status).value
        with storage_errors():
            conn = self.connections.find_one(
                {"_id": object_id(connection_id)}, {"last_refreshed_at": 1}
            )
            docs = list(
                self.descriptions.find(query, {"scan_lease_expires_at": 0}, batch_size=100_000)
            )
        refreshed = as_utc(conn.get("last_refreshed_at")) if conn else None
        docs.sort(key=lambda d: (d["schema_name"], d["table_name"]))
        return [_with_refresh_time(TableDescription.from_doc(d), refreshed) for d in docs]

    def get_description(self, description_id: str) -> TableDescription:
        with storage_errors():
            doc = self.descriptions.find_one({"_id": object_id(description_id)})
        if doc is None:
            raise TableDescriptionNotFound(
                f"table description {description_id!r} not found", {"id": description_id}
            )
        conn = self.connections.find_one(
            {"_id": object_id(doc["db_connection_id"])}, {"last_refreshed_at": 1}
        )
        refreshed = as_utc(conn.get("last_refreshed_at")) if conn else None
        return _with_refresh_time(TableDescription.from_doc(doc), refreshed)

    def update_description(self, description_id: str, changes: dict[str, Any]) -> TableDescription:
        """Set people's fields ($set paths prepared by the caller); returns the new document."""
        with storage_errors():
            doc = self._people_descriptions.find_one_and_update(
                {"_id": object_id(description_id)},
                {"$set": changes},
                return_document=ReturnDocument.AFTER,
            )
        if doc is None:
            raise TableDescriptionNotFound(
                f"table description {description_id!r} not found", {"id": description_id}
            )
        return self.get_description(description_id)

    # -- people's edits of a description (the API's PUT) ----------------------------------------

    def edit_description(
        self,
        description_id: str,
        *,
        fields: dict[str, Any],
        columns: dict[str, dict[str, Any]],
    ) -> TableDescription:
        """Set top-level people's fields and, per named column, its people's fields, in one write.

        Columns are addressed by name through array filters, so a scan rewriting other parts of
        the document at the same moment loses nothing; a name that is not a column of the
        description (checked in the same write) is a ValidationFailed naming it.
        """
        oid = object_id(description_id)
        update = dict(fields)
        array_filters = []
        for i, (name, changes) in enumerate(columns.items()):
            if not changes:
                continue
            array_filters.append({f"c{i}.name": name})
            update.update({f"columns.$[c{i}].{key}": value for key, value in changes.items()})
        query: dict[str, Any] = {"_id": oid}
        if columns:
            query["columns.name"] = {"$all": list(columns)}
        with storage_errors():
            if update:
                doc = self._people_descriptions.find_one_and_update(
                    query,
                    {"$set": update},
                    array_filters=array_filters or None,
                    projection={"_id": 1},
                )
            else:
                doc = self.descriptions.find_one(query, {"_id": 1})
            if doc is not None:
                return self.get_description(description_id)
            current = self.descriptions.find_one({"_id": oid}, {"columns": 1})
        if current is None:
            raise TableDescriptionNotFound(
                f"table description {description_id!r} not found", {"id": description_id}
            )
        known = [c.get("name") for c in current.get("columns") or []]
        unknown = [name for name in columns if name not in known]
        raise ValidationFailed(
            f"unknown column(s) {', '.join(map(repr, unknown))}: not columns of this table "
            "description (a scan lists them)",
            {"unknown_columns": unknown, "known_columns": known},
        )

    # -- scans: the SYNCHRONIZING lifecycle (issue 4, tdsync/scan) --------------------------------
    # A scan marks its rows SYNCHRONIZING under its run id (`scan_run_id`) with a lease
    # (`scan_lease_expires_at`), renews the lease while it works and settles each row SCANNED or
    # FAILED with a write conditional on the row still being SYNCHRONIZING under that run id: a row
    # that a newer scan took over, or that a refresh expired meanwhile, is left alone.

    def expire_scan_leases(self, connection_id: str, now: datetime) -> int:
        """A connection's rows SYNCHRONIZING past their lease (a scan died) become FAILED."""
        query = {
            "db_connection_id": connection_id,
            "status": Status.SYNCHRONIZING.value,
            "$or": [{"scan_lease_expires_at": {"$lte": now}}, {"scan_lease_expires_at": None}],
        }
        with storage_errors():
            docs = list(self.descriptions.find(query, {"scan_lease_expires_at": 1}))
            ops = [
                UpdateOne(
                    {**query, "_id": d["_id"]},
                    {
                        "$set": {
                            "status": Status.FAILED.value,
                            "error_message": LEASE_EXPIRED_MESSAGE.format(
                                expiry=_iso(d.get("scan_lease_expires_at"))
                            ),
                        },
                        "$unset": {"scan_lease_expires_at": "", "scan_run_id": ""},
                    },
                )
                for d in docs
            ]
            return self.descriptions.bulk_write(ops, ordered=False).modified_count if ops else 0

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
        fields["status"] = 1
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
            docs = list(self.descriptions.find(query, fields, batch_size=100_000))
        if ids is not None:
            found = {d["_id"] for d in docs}
            missing = [str(o) for o in oids if o not in found]
            if missing:
                raise TableDescriptionNotFound(
                    f"table description(s) not found: {', '.join(missing)}", {"ids": missing}
                )
        if names:
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
        """Mark rows SYNCHRONIZING for a scan run (taking them over from any earlier scan) and
        return exactly the rows marked: these ids, or every row of the connection that is not
        DEPRECATED. Sorted by (schema_name, table_name)."""
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
        fields = {k: 1 for k in ("schema_name", "table_name", "table_type", "status")}
        fields["last_schema_sync"] = 1
        with storage_errors():
            if ids is None:
                self.descriptions.update_many(scannable, claim)
            else:
                for chunk in _chunked([ObjectId(i) for i in dict.fromkeys(ids)]):
                    self.descriptions.update_many({**scannable, "_id": {"$in": chunk}}, claim)
            docs = self.descriptions.find(
                {"db_connection_id": connection_id, "scan_run_id": run_id}, fields
            )
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

    def renew_scan_lease(self, connection_id: str, run_id: str, lease_expires_at: datetime) -> int:
        """Push back the lease of the rows a live scan run still holds."""
        with storage_errors():
            result = self.descriptions.update_many(
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
        again, so nobody's edit is lost.
        """
        saved = SavedScans()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as stored: milliseconds
        for chunk in _chunked(scans):
            self._save_scan_chunk(run_id, chunk, now, saved)
        return saved

    def _save_scan_chunk(
        self, run_id: str, scans: list[TableScan], now: datetime, saved: SavedScans
    ) -> None:
        pending = {ObjectId(s.target.id): s for s in scans}
        held = {"status": Status.SYNCHRONIZING.value, "scan_run_id": run_id}
        done = {"scan_lease_expires_at": "", "scan_run_id": ""}
        # A row never scanned has no columns to merge or compare (people describe the columns a
        # scan listed): the first attempt writes it without reading it (a first scan of 10,000
        # tables saves 200 reads). Whatever must be tried again is read.
        unread = {oid for oid, s in pending.items() if not s.target.scanned_before}
        for _attempt in range(5):
            with storage_errors():
                docs: list[dict[str, Any]] = [{"_id": oid} for oid in unread]
                to_read = [oid for oid in pending if oid not in unread]
                if to_read:
                    docs += self.descriptions.find(
                        {"_id": {"$in": to_read}, **held}, {"columns": 1, "last_schema_sync": 1}
                    )
                ops, outcomes = [], []
                for doc in docs:
                    scan = pending[doc["_id"]]
                    if not scan.ok:
                        update = {
                            "$set": {"status": Status.FAILED.value, "error_message": scan.error},
                            "$unset": done,
                        }
                        ops.append(UpdateOne({"_id": doc["_id"], **held}, update))
                        outcomes.append((scan, None))
                        continue
                    stored = doc.get("columns")
                    drift = schema_drift(
                        stored,
                        scan.columns,
                        previously_scanned=doc.get("last_schema_sync") is not None,
                        now=now,
                    )
                    update = {
                        "$set": {
                            "status": Status.SCANNED.value,
                            "error_message": None,
                            "table_schema": scan.table_schema,
                            "columns": merge_columns(stored, scan.columns),
                            "examples": scan.examples,
                            "last_schema_sync": now,
                        },
                        "$unset": done,
                    }
                    if drift is not None:
                        entry = drift.model_dump()
                        update["$push"] = {
                            "schema_changes": {"$each": [entry], "$slice": -SCHEMA_CHANGES_KEPT}
                        }
                    unchanged = {} if doc["_id"] in unread else {"columns": stored}
                    ops.append(UpdateOne({"_id": doc["_id"], **held, **unchanged}, update))
                    outcomes.append((scan, drift))
                unread = set()
                if not ops:
                    break
                written = self.descriptions.bulk_write(ops, ordered=False).modified_count
                retry: set[ObjectId] = set()
                lost: set[ObjectId] = set()
                if written < len(ops):
                    # Who lost a race? Rows still held by this run were edited meanwhile: merged
                    # again. Rows a newer scan took over, or a refresh deprecated, are not ours.
                    rows = {
                        d["_id"]: d
                        for d in self.descriptions.find(
                            {"_id": {"$in": [ObjectId(s.target.id) for s, _ in outcomes]}},
                            {k: 1 for k in ("status", "scan_run_id", "error_message")}
                            | {"last_schema_sync": 1},
                        )
                    }
                    for scan, _drift in outcomes:
                        oid = ObjectId(scan.target.id)
                        row = rows.get(oid, {})
                        if all(row.get(k) == v for k, v in held.items()):
                            retry.add(oid)
                        elif not _settled_by(row, scan, now):
                            lost.add(oid)
            for scan, drift in outcomes:
                if ObjectId(scan.target.id) in retry | lost:
                    continue
                if scan.ok:
                    saved.scanned += 1
                    if drift is not None:
                        saved.drift.append((scan.target, drift))
                else:
                    saved.failed += 1
            pending = {oid: scan for oid, scan in pending.items() if oid in retry}
            if not pending:
                break

    def claimed_descriptions(self, connection_id: str, run_id: str) -> list[TableDescription]:
        """The descriptions a scan run holds, sorted by (schema_name, table_name)."""
        with storage_errors():
            conn = self.connections.find_one(
                {"_id": object_id(connection_id)}, {"last_refreshed_at": 1}
            )
            docs = list(
                self.descriptions.find(
                    {"db_connection_id": connection_id, "scan_run_id": run_id},
                    {"scan_lease_expires_at": 0},
                )
            )
        refreshed = as_utc(conn.get("last_refreshed_at")) if conn else None
        docs.sort(key=lambda d: (d["schema_name"], d["table_name"]))
        return [_with_refresh_time(TableDescription.from_doc(d), refreshed) for d in docs]

    # -- start-up checks (issue 8: reliability) --------------------------------------------------

    def verify_key(self) -> None:
        """Raise ConfigurationError now when the stored connection URIs were encrypted with
        another key, instead of at every later request that reads one."""
        with storage_errors():
            doc = self.connections.find_one({}, {"connection_uri": 1})
        if doc is not None:
            self.cipher.decrypt(doc["connection_uri"])


def _with_refresh_time(
    desc: TableDescription, connection_refreshed: datetime | None
) -> TableDescription:
    # Writing last_refreshed_at on every seen row would make every refresh rewrite the whole
    # catalogue. A row that is not DEPRECATED was seen by the connection's last successful
    # refresh (a refresh that cannot list a schema fails whole), so its time is derived here.
    if (
        desc.status != Status.DEPRECATED
        and connection_refreshed is not None
        and (desc.last_refreshed_at is None or connection_refreshed > desc.last_refreshed_at)
    ):
        desc.last_refreshed_at = connection_refreshed
    return desc


class storage_errors:
    """Turn driver-level failures (server down, timeouts) into StorageUnavailable (503)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, PyMongoError):
            return False
        if isinstance(exc, (DuplicateKeyError, BulkWriteError)):
            return False
        if isinstance(
            exc,
            (
                pymongo.errors.ConnectionFailure,
                pymongo.errors.ServerSelectionTimeoutError,
                pymongo.errors.ExecutionTimeout,
                pymongo.errors.NetworkTimeout,
            ),
        ):
            raise StorageUnavailable(
                "the catalogue's MongoDB is unreachable", {"reason": _first_line(exc)}
            ) from None
        return False


def _settled_by(row: dict[str, Any], scan: TableScan, now: datetime) -> bool:
    """Whether this row holds what save_scans wrote for `scan` at `now`."""
    if not scan.ok:
        return row.get("status") == Status.FAILED.value and row.get("error_message") == scan.error
    return row.get("status") == Status.SCANNED.value and as_utc(row.get("last_schema_sync")) == now


def _first_line(exc: BaseException) -> str:
    text = str(exc).split(",", 1)[0]
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1*****@", text)[:300]


def lease_expiry(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


def _iso(value: datetime | None) -> str:
    return as_utc(value).isoformat() if value is not None else "unknown"


def _chunked(values: list, size: int = 50) -> list[list]:
    # Long `$in` lists cost more than their length on SecantusDB: 1,000 ids take seconds.
    return [values[i : i + size] for i in range(0, len(values), size)]


def _suffixes(name: str) -> list[str]:
    """`a.b.c` -> [`a.b.c`, `b.c`, `c`]: the table names a maybe-qualified name can mean."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


def _qualified(doc: dict[str, Any]) -> str:
    return f"{doc['schema_name']}.{doc['table_name']}"
