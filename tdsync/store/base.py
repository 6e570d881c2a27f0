"""The MongoDB client, the catalogue's collections and indexes, and store failures as 503s."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pymongo
from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, MongoClient, UpdateOne, WriteConcern
from pymongo.collection import Collection

from tdsync.config.credentials import Cipher, scrub
from tdsync.domain.errors import InvalidObjectId, StorageUnavailable
from tdsync.domain.models import Status, as_utc
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


class StoreBase:
    """The store's collections and set-up; CatalogueStore adds the rest by concern."""

    def __init__(self, client: MongoClient, db_name: str, cipher: Cipher) -> None:
        self.cipher = cipher
        self.bind(client, db_name)

    def bind(self, client: MongoClient, db_name: str | None = None) -> None:
        """Use `client` from now on: also when the embedded server moved to another port, so
        every holder of this store follows it (tdsync.store.client)."""
        self.client = client
        self.db = client[db_name or self.db.name]
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

    def _refreshed_at(self, connection_id: str) -> datetime | None:
        """The connection's last successful refresh (read before the descriptions it dates)."""
        with storage_errors():
            conn = self.connections.find_one(
                {"_id": object_id(connection_id)}, {"last_refreshed_at": 1}
            )
        return as_utc(conn.get("last_refreshed_at")) if conn else None

    # -- start-up checks (issue 8: reliability) --------------------------------------------------

    def verify_key(self) -> None:
        """Raise ConfigurationError now when the stored connection URIs were encrypted with
        another key, instead of at every later request that reads one."""
        with storage_errors():
            doc = self.connections.find_one({}, {"connection_uri": 1})
        if doc is not None:
            self.cipher.decrypt(doc["connection_uri"])


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


def _iso(value: datetime | None) -> str:
    return as_utc(value).isoformat() if value is not None else "unknown"


def _chunked(values: list, size: int = 50) -> list[list]:
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
            "error_message": LEASE_EXPIRED_MESSAGE.format(expiry=_iso(expired_at)),
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


def _lease_over(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is None or as_utc(expires_at) <= now
