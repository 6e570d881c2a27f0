"""Test support (fast tier): an in-memory fake of `tdsync.store.CatalogueStore`, and the Dagster
resource that hands it to schedules and sensors.

The fake implements the public store methods that the API routes, the schedules and the sensors
call, with the store's semantics: aliases normalised and unique, crons validated, URIs masked on
the way out, not-found errors, lease rules, SYNCHRONIZING rows settled by run. Its `descriptions`
and `connections` attributes are tiny stand-ins for the MongoDB collections (equality filters,
`$set`/`$unset`), so a test seeds rows the same way against the fake and the real store.
tdsync_tests/test_store_contract.py runs the same assertions against both so it cannot drift.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from bson import ObjectId

from tdsync.config.credentials import dialect_of, keep_stored_password, mask_uri
from tdsync.defs.resources import StoreResource
from tdsync.domain.cron import validate_refresh_schedule
from tdsync.domain.errors import (
    ConnectionNotFound,
    DuplicateAlias,
    InvalidObjectId,
    TableDescriptionNotFound,
    ValidationFailed,
)
from tdsync.domain.limits import normalise_alias
from tdsync.domain.models import (
    DATA_MAX_AGE_S,
    DatabaseConnection,
    Status,
    TableDescription,
    as_utc,
    utcnow,
)
from tdsync.store import lease_expiry


class FakeCollection:
    """Documents in a list: equality filters (a list value in `{"$in": [...]}`), `$set`/`$unset`."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    def insert_one(self, doc: dict[str, Any]) -> None:
        doc.setdefault("_id", ObjectId())
        self.docs.append(copy.deepcopy(doc))

    def find(self, query: dict[str, Any] | None = None, *_: Any) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in self.docs if _matches(d, query or {})]

    def find_one(self, query: dict[str, Any] | None = None, *_: Any) -> dict[str, Any] | None:
        found = self.find(query)
        return found[0] if found else None

    def update_one(self, query: dict[str, Any], update: dict[str, Any]) -> int:
        return self._update(query, update, many=False)

    def update_many(self, query: dict[str, Any], update: dict[str, Any]) -> int:
        return self._update(query, update, many=True)

    def delete_many(self, query: dict[str, Any]) -> None:
        self.docs = [d for d in self.docs if not _matches(d, query)]

    def _update(self, query: dict[str, Any], update: dict[str, Any], *, many: bool) -> int:
        changed = 0
        for doc in self.docs:
            if not _matches(doc, query):
                continue
            doc.update(copy.deepcopy(update.get("$set", {})))
            for key in update.get("$unset", {}):
                doc.pop(key, None)
            changed += 1
            if not many:
                break
        return changed


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    for key, wanted in query.items():
        value = doc.get(key)
        if isinstance(wanted, dict) and "$in" in wanted:
            if value not in wanted["$in"]:
                return False
        elif value != wanted:
            return False
    return True


def _oid(value: str, what: str) -> ObjectId:
    if not ObjectId.is_valid(value):
        raise InvalidObjectId(f"{what} {value!r} is not a valid ObjectId")
    return ObjectId(value)


def _alias(alias: str) -> str:
    try:
        return normalise_alias(alias)
    except ValueError as exc:
        raise ValidationFailed(f"alias: {exc}", {"field": "alias"}) from None


class FakeStore:
    """CatalogueStore's public methods for routes, schedules and sensors, in memory."""

    def __init__(self) -> None:
        self.connections = FakeCollection()
        self.descriptions = FakeCollection()
        self.leases: dict[str, dict[str, Any]] = {}
        self.down: Exception | None = None  # set it to make ping() fail as a store down would

    def ping(self) -> None:
        if self.down is not None:
            raise self.down

    # -- connections --------------------------------------------------------------------------

    def add_connection(
        self,
        *,
        alias: str,
        connection_uri: str,
        schemas: list[str] | None = None,
        refresh_schedule: str | None = None,
        auto_scan: bool = False,
        scan_schedule: str | None = None,
        data_max_age_s: int = DATA_MAX_AGE_S,
        metadata: dict[str, Any] | None = None,
        use_ssh: bool | None = None,
        ssh_settings: dict[str, Any] | None = None,
        llm_api_key: str | None = None,
    ) -> DatabaseConnection:
        doc = {
            "_id": ObjectId(),
            "alias": _alias(alias),
            "dialect": dialect_of(connection_uri),
            "connection_uri": connection_uri,
            "schemas": schemas or None,
            "refresh_schedule": validate_refresh_schedule(refresh_schedule),
            "auto_scan": bool(auto_scan),
            "scan_schedule": validate_refresh_schedule(scan_schedule, "scan_schedule"),
            "data_max_age_s": data_max_age_s,
            "metadata": metadata,
            "created_at": utcnow(),
            "last_refreshed_at": None,
            "use_ssh": bool(use_ssh),
            "ssh_settings": ssh_settings,
            "llm_api_key": llm_api_key,
        }
        self._unique_alias(doc["alias"], doc["_id"])
        self.connections.insert_one(doc)
        return self._connection(doc)

    def update_connection(self, connection_id: str, **changes: Any) -> DatabaseConnection:
        current = self._connection_doc(connection_id)
        update: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "connection_uri":
                value = self.unmasked_uri(current, value)
                update["dialect"] = dialect_of(value)
            elif key in ("refresh_schedule", "scan_schedule"):
                value = validate_refresh_schedule(value, key)
            elif key == "alias":
                value = _alias(value)
                self._unique_alias(value, current["_id"])
            elif key == "schemas":
                value = value or None
            update[key] = value
        self.connections.update_one({"_id": current["_id"]}, {"$set": update})
        return self._connection(self._connection_doc(str(current["_id"])))

    def get_connection(self, id_or_alias: str) -> DatabaseConnection:
        return self._connection(self._connection_doc(id_or_alias))

    def list_connections(self) -> list[DatabaseConnection]:
        docs = sorted(self.connections.find(), key=lambda d: d["alias"])
        return [self._connection(d) for d in docs]

    def connection_uri(self, connection_id: str) -> str:
        return self._connection_doc(connection_id)["connection_uri"]

    def unmasked_uri(self, connection: str | dict[str, Any], connection_uri: str) -> str:
        doc = connection if isinstance(connection, dict) else self._connection_doc(connection)
        return keep_stored_password(connection_uri, doc["connection_uri"])

    def ssh_settings(
        self, connection_id: str, changes: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        doc = {**self._connection_doc(connection_id), **(changes or {})}
        return doc.get("ssh_settings") if doc.get("use_ssh") else None

    def delete_connection(self, connection_id: str) -> None:
        doc = self._connection_doc(connection_id)
        self.descriptions.delete_many({"db_connection_id": str(doc["_id"])})
        self.connections.delete_many({"_id": doc["_id"]})

    def _unique_alias(self, alias: str, own_id: ObjectId) -> None:
        if any(d["alias"] == alias and d["_id"] != own_id for d in self.connections.docs):
            raise DuplicateAlias(f"alias {alias!r} is already taken", {"alias": alias})

    def _connection_doc(self, id_or_alias: str) -> dict[str, Any]:
        try:
            alias = normalise_alias(id_or_alias)
        except ValueError:
            alias = id_or_alias
        for doc in self.connections.find():
            if doc["alias"] == alias or str(doc["_id"]) == id_or_alias:
                return doc
        raise ConnectionNotFound(
            f"database connection {id_or_alias!r} not found", {"db_connection_id": id_or_alias}
        )

    def _connection(self, doc: dict[str, Any]) -> DatabaseConnection:
        return DatabaseConnection.from_doc(doc, mask_uri(doc["connection_uri"]))

    # -- descriptions -------------------------------------------------------------------------

    def refreshed_at(self, connection_id: str) -> datetime | None:
        doc = self.connections.find_one({"_id": ObjectId(connection_id)})
        return as_utc(doc.get("last_refreshed_at")) if doc else None

    def description_docs(
        self,
        connection_id: str,
        *,
        schema_name: str | None = None,
        table_name: str | None = None,
        status: Status | None = None,
        limit: int | None = None,
        after: str | None = None,
        batch_size: int = 0,
    ) -> list[dict[str, Any]]:
        def wanted(d: dict[str, Any]) -> bool:
            schema, dot, table = (table_name or "").partition(".")
            named = d["table_name"] == table_name or (
                dot and (d["schema_name"], d["table_name"]) == (schema, table)
            )
            return (
                (not schema_name or d["schema_name"] == schema_name)
                and (not table_name or named)
                and (status is None or d["status"] == Status(status).value)
                and (after is None or d["_id"] > _oid(after, "after"))
            )

        docs = [d for d in self.descriptions.find({"db_connection_id": connection_id}) if wanted(d)]
        if limit is not None or after is not None:
            return sorted(docs, key=lambda d: d["_id"])[:limit]
        return sorted(docs, key=lambda d: (d["schema_name"], d["table_name"]))

    def list_descriptions(self, connection_id: str, **filters: Any) -> list[TableDescription]:
        return [self._described(d) for d in self.description_docs(connection_id, **filters)]

    def get_description(self, description_id: str) -> TableDescription:
        return self._described(self._description_doc(description_id))

    def edit_description(
        self, description_id: str, *, fields: dict[str, Any], columns: dict[str, dict[str, Any]]
    ) -> TableDescription:
        doc = self._description_doc(description_id)
        known = [c.get("name") for c in doc.get("columns") or []]
        unknown = [name for name in columns if name not in known]
        if unknown:
            raise ValidationFailed(
                f"unknown column(s) {', '.join(map(repr, unknown))}: not columns of this table "
                "description (a scan lists them)",
                {"unknown_columns": unknown, "known_columns": known},
            )
        for column in doc.get("columns") or []:
            column.update(columns.get(column.get("name"), {}))
        self.descriptions.update_one(
            {"_id": doc["_id"]}, {"$set": {**fields, "columns": doc.get("columns")}}
        )
        return self.get_description(description_id)

    def merge_metadata(
        self, description_ids: list[str], metadata: dict[str, Any]
    ) -> list[TableDescription]:
        docs = [self._description_doc(i) for i in description_ids]
        for doc in docs:
            merged = {**(doc.get("metadata") or {}), **metadata}
            self.descriptions.update_one({"_id": doc["_id"]}, {"$set": {"metadata": merged}})
        described = [self.get_description(str(d["_id"])) for d in docs]
        return sorted(described, key=lambda d: (d.schema_name, d.table_name))

    def _description_doc(self, description_id: str) -> dict[str, Any]:
        doc = self.descriptions.find_one({"_id": _oid(description_id, "table_description_id")})
        if doc is None:
            raise TableDescriptionNotFound(
                f"table description {description_id!r} not found", {"id": description_id}
            )
        return doc

    def _described(self, doc: dict[str, Any]) -> TableDescription:
        desc = TableDescription.from_doc(doc)
        refreshed = self.refreshed_at(doc["db_connection_id"])
        if desc.status != Status.DEPRECATED and refreshed is not None:
            desc.last_refreshed_at = max(desc.last_refreshed_at or refreshed, refreshed)
        return desc

    # -- statuses, scans ----------------------------------------------------------------------

    def descriptions_with_status(self, connection_id: str, status: Status) -> int:
        query = {"db_connection_id": connection_id, "status": Status(status).value}
        return len(self.descriptions.find(query))

    def failed_descriptions(self, connection_id: str, *, limit: int = 20) -> dict[str, str]:
        docs = self.descriptions.find({"db_connection_id": connection_id, "status": "FAILED"})
        return {
            f"{d['schema_name']}.{d['table_name']}": d.get("error_message") or ""
            for d in docs[:limit]
        }

    def scans_past_lease(self, connection_id: str, now: datetime) -> list[str]:
        docs = self.descriptions.find(
            {"db_connection_id": connection_id, "status": "SYNCHRONIZING"}
        )
        return sorted(
            f"{d['schema_name']}.{d['table_name']}"
            for d in docs
            if d.get("scan_lease_expires_at") is None or as_utc(d["scan_lease_expires_at"]) <= now
        )

    def fail_synchronizing(
        self, connection_id: str, *, error_message: str, scan_run_id: str | None = None
    ) -> int:
        query: dict[str, Any] = {"db_connection_id": connection_id, "status": "SYNCHRONIZING"}
        if scan_run_id is not None:
            query["scan_run_id"] = {"$in": [scan_run_id, None]}
        return self.descriptions.update_many(
            query,
            {
                "$set": {"status": Status.FAILED.value, "error_message": error_message},
                "$unset": {"scan_lease_expires_at": ""},
            },
        )

    # -- connection leases --------------------------------------------------------------------

    def acquire_connection_lease(
        self, connection_id: str, *, holder: str, kind: str, ttl_s: float, now: datetime
    ) -> bool:
        lease = self.leases.setdefault(connection_id, {"_id": connection_id, "holder": None})
        expires = lease.get("expires_at")
        if lease["holder"] not in (None, holder) and (expires is None or expires > now):
            return False
        lease.update(holder=holder, kind=kind, acquired_at=now, expires_at=lease_expiry(now, ttl_s))
        return True

    def release_connection_leases(
        self, holder: str, *, succeeded: bool, outcome: Any = None, now: datetime
    ) -> int:
        last = {"holder": holder, "succeeded": succeeded, "outcome": outcome, "released_at": now}
        held = [lease for lease in self.leases.values() if lease["holder"] == holder]
        for lease in held:
            lease.update(holder=None, expires_at=None, last=last)
        return len(held)

    def connection_lease(self, connection_id: str) -> dict[str, Any] | None:
        lease = self.leases.get(connection_id)
        return copy.deepcopy(lease) if lease is not None else None


# The fakes that FakeStoreResource hands out, by key: Dagster rebuilds a resource from its config
# fields, so the fake itself cannot be one of them.
FAKE_STORES: dict[str, FakeStore] = {}


class FakeStoreResource(StoreResource):
    """StoreResource whose get_store() is a FakeStore (see `fake_resource`)."""

    fake_key: str = ""

    def get_store(self) -> FakeStore:  # type: ignore[override]
        return FAKE_STORES[self.fake_key]


def fake_resource(store: FakeStore, **fields: Any) -> FakeStoreResource:
    """The `catalogue` resource for build_sensor_context/build_schedule_context over `store`."""
    key = str(id(store))
    FAKE_STORES[key] = store
    return FakeStoreResource(fake_key=key, **fields)


def describe(store, connection_id: str, schema: str, table: str, **fields) -> str:
    """Seed one stored description, as a refresh would (the fake and the real store alike)."""
    doc = {
        "_id": ObjectId(),
        "db_connection_id": connection_id,
        "schema_name": schema,
        "table_name": table,
        "status": Status.NOT_SCANNED.value,
        **fields,
    }
    store.descriptions.insert_one(doc)
    return str(doc["_id"])
