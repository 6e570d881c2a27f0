"""Store layer: what every repository shares: the collections' names, the MongoDB client, ids,
store failures as 503s, scan leases and descriptions as the API shows them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import pymongo
from bson import ObjectId
from bson.errors import InvalidId
from pymongo import MongoClient, UpdateOne

from tdsync.config.credentials import scrub
from tdsync.domain.errors import InvalidObjectId, StorageUnavailable
from tdsync.domain.models import Status, TableDescription, as_utc
from tdsync.domain.refresh_rules import LEASE_EXPIRED_MESSAGE

CONNECTIONS = "database_connections"
DESCRIPTIONS = "table_descriptions"
LEASES = "connection_leases"
VERSIONS = "catalogue_versions"  # tdsync.store.versions
DUPLICATE_KEY = 11000


def object_id(value: str, *, what: str = "id") -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise InvalidObjectId(f"{what} {value!r} is not a valid ObjectId") from None


def mongo_client(
    uri: str, *, timeout_ms: int = 5000, event_listeners: tuple = (), embedded: bool = False
) -> MongoClient:
    """A client of the catalogue's MongoDB, with tdsync's timeouts.

    Retryable writes keep MongoDB's default (on), or what the URI says: a production replica set
    keeps them across a failover. Only the `embedded` SecantusDB has them off (its URI says so
    too): with them on, its single writes become ~6x slower once it has taken ~10,000 of them, as
    it re-sorts its retry log on every write (SECANTUSDB.md).
    """
    tuning = {"retryWrites": False} if embedded else {}
    return MongoClient(
        uri,
        event_listeners=event_listeners,
        **tuning,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 12, 60_000),
        tz_aware=True,
    )


# Driver failures that mean "the catalogue's MongoDB cannot be reached" (ConnectionFailure
# covers AutoReconnect, NetworkTimeout and ServerSelectionTimeoutError).
STORE_FAILURES = (pymongo.errors.ConnectionFailure, pymongo.errors.ExecutionTimeout)


def storage_unavailable(exc: BaseException) -> StorageUnavailable:
    """The 503 for a driver failure: its first clause, any URI password masked."""
    reason = scrub(str(exc).split(",", 1)[0])[:300]
    return StorageUnavailable("the catalogue's MongoDB is unreachable", {"reason": reason})


class storage_errors:
    """Turn driver-level failures (server down, timeouts) into StorageUnavailable (503)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, STORE_FAILURES):
            raise storage_unavailable(exc) from None
        return False


def lease_expiry(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


def iso(value: datetime | None) -> str:
    return as_utc(value).isoformat() if value is not None else "unknown"


def chunked(values: list, size: int = 50) -> list[list]:
    # Long `$in` lists cost more than their length on SecantusDB. Measured (SecantusDB 0.7.0b3,
    # 2 cores at load 4.8, 10,000 rows, 1,000 of them asked for): `find({_id: {$in}})` 1.52 s
    # in one list, 0.20 s in chunks of 50; the bulk write of one UpdateOne per id 1.36 s as one
    # batch, 0.99 s in chunks of 50. MongoDB answers either way in milliseconds, and 20 round
    # trips instead of one cost it nothing that matters, so one rule serves both.
    return [values[i : i + size] for i in range(0, len(values), size)]


def lease_expired(
    row_id: ObjectId, expired_at: datetime | None, now: datetime, *, refresh: bool = False
) -> UpdateOne:
    """The write that fails a row still SYNCHRONIZING past its scan lease (its scan died).

    A refresh's also dates the row (`last_refreshed_at`) and keeps its `scan_run_id`."""
    update: dict[str, Any] = {
        "$set": {
            "status": Status.FAILED.value,
            "error_message": LEASE_EXPIRED_MESSAGE.format(expiry=iso(expired_at)),
        },
        "$unset": {"scan_lease_expires_at": ""},
    }
    if refresh:
        update["$set"]["last_refreshed_at"] = now
    else:
        update["$unset"]["scan_run_id"] = ""
    condition = {
        "_id": row_id,
        "status": Status.SYNCHRONIZING.value,
        "$or": [{"scan_lease_expires_at": {"$lte": now}}, {"scan_lease_expires_at": None}],
    }
    return UpdateOne(condition, update)


def lease_over(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is None or as_utc(expires_at) <= now


def described(docs: Iterable[dict[str, Any]], refreshed: datetime | None) -> list[TableDescription]:
    """Stored documents as descriptions, sorted by (schema_name, table_name)."""
    ordered = sorted(docs, key=lambda d: (d["schema_name"], d["table_name"]))
    return [with_refresh_time(TableDescription.from_doc(d), refreshed) for d in ordered]


def with_refresh_time(
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
