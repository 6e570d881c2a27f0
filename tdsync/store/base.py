"""The MongoDB client, the catalogue's collections and indexes, and store failures as 503s."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pymongo
from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, MongoClient, WriteConcern
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from tdsync.credentials import Cipher
from tdsync.errors import InvalidObjectId, StorageUnavailable
from tdsync.models import as_utc

CONNECTIONS = "database_connections"
DESCRIPTIONS = "table_descriptions"
LEASES = "connection_leases"
DUPLICATE_KEY = 11000


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


class StoreBase:
    """The store's collections and set-up; CatalogueStore adds the rest by concern."""

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

    # -- start-up checks (issue 8: reliability) --------------------------------------------------

    def verify_key(self) -> None:
        """Raise ConfigurationError now when the stored connection URIs were encrypted with
        another key, instead of at every later request that reads one."""
        with storage_errors():
            doc = self.connections.find_one({}, {"connection_uri": 1})
        if doc is not None:
            self.cipher.decrypt(doc["connection_uri"])


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
