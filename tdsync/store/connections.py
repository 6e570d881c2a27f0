"""Store layer: the database connections repository: add, change, read (URI masked or
decrypted), delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument, WriteConcern
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from tdsync.config.credentials import MASK, Cipher, dialect_of, keep_stored_password, mask_uri
from tdsync.domain.cron import validate_refresh_schedule
from tdsync.domain.errors import ConnectionNotFound, DuplicateAlias, ValidationFailed
from tdsync.domain.limits import normalise_alias
from tdsync.domain.models import DATA_MAX_AGE_S, DatabaseConnection, as_utc, utcnow
from tdsync.store.common import object_id, storage_errors


class Connections:
    """Registered database connections (`database_connections`); their URIs are encrypted at rest.
    What people write is journaled before it is acknowledged (tdsync.store.catalogue_store)."""

    def __init__(self, collection: Collection, cipher: Cipher) -> None:
        self.collection = collection
        self._journaled = collection.with_options(write_concern=WriteConcern(j=True))
        self.cipher = cipher

    def ensure_indexes(self) -> None:
        with storage_errors():
            self.collection.create_index([("alias", ASCENDING)], unique=True, name="alias_unique")

    def verify_key(self) -> None:
        """Raise ConfigurationError now when the stored connection URIs were encrypted with
        another key, instead of at every later request that reads one."""
        with storage_errors():
            doc = self.collection.find_one({}, {"connection_uri": 1})
        if doc is not None:
            self.cipher.decrypt(doc["connection_uri"])

    def refreshed_at(self, connection_id: str) -> datetime | None:
        """The connection's last successful refresh (read before the descriptions it dates)."""
        with storage_errors():
            conn = self.collection.find_one(
                {"_id": object_id(connection_id)}, {"last_refreshed_at": 1}
            )
        return as_utc(conn.get("last_refreshed_at")) if conn else None

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
        refresh_schedule = validate_refresh_schedule(refresh_schedule)
        scan_schedule = validate_refresh_schedule(scan_schedule, "scan_schedule")
        alias = _alias(alias)
        doc = {
            "_id": ObjectId(),
            "alias": alias,
            "dialect": dialect_of(connection_uri),
            "connection_uri": self.cipher.encrypt(connection_uri),
            "schemas": schemas or None,
            "refresh_schedule": refresh_schedule,
            "auto_scan": bool(auto_scan),
            "scan_schedule": scan_schedule,
            "data_max_age_s": data_max_age_s,
            "metadata": metadata,
            "created_at": utcnow(),
            "last_refreshed_at": None,
            "use_ssh": bool(use_ssh),
            "ssh_settings": self._sealed_ssh(ssh_settings, None),
            "llm_api_key": self._sealed(llm_api_key, None),
        }
        _check_ssh(doc)
        with storage_errors():
            try:
                self._journaled.insert_one(doc)
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
                value = self.unmasked_uri(current, value)
                update["dialect"] = dialect_of(value)
                update["connection_uri"] = self.cipher.encrypt(value)
            elif key == "ssh_settings":
                update[key] = self._sealed_ssh(value, current.get(key))
            elif key == "llm_api_key":
                update[key] = self._sealed(value, current.get(key))
            elif key == "use_ssh":
                update[key] = bool(value)
            elif key == "schemas":
                update["schemas"] = value or None
            elif key in ("refresh_schedule", "scan_schedule"):
                update[key] = validate_refresh_schedule(value, key)
            elif key == "alias":
                update[key] = _alias(value)
            else:
                update[key] = value
        if not update:
            return self._connection(current)
        _check_ssh({**current, **update})
        with storage_errors():
            try:
                doc = self._journaled.find_one_and_update(
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
            docs = list(self.collection.find().sort("alias", ASCENDING))
        return [self._connection(d) for d in docs]

    def connection_uri(self, connection_id: str) -> str:
        """The decrypted URI: for opening an engine, never for display."""
        return self.cipher.decrypt(self._connection_doc(connection_id)["connection_uri"])

    def unmasked_uri(self, connection: str | dict[str, Any], connection_uri: str) -> str:
        """A URI sent back with its password masked, given the stored password (one rule for the
        API and every CLI command that changes a URI; see credentials.keep_stored_password)."""
        doc = connection if isinstance(connection, dict) else self._connection_doc(connection)
        return keep_stored_password(connection_uri, self.cipher.decrypt(doc["connection_uri"]))

    def ssh_settings(
        self, connection_id: str, changes: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The decrypted SSH settings when the connection goes through SSH (after `changes`, an
        update not yet stored, when given): for opening a tunnel, never for display."""
        return self._ssh_of(self._connection_doc(connection_id), changes or {})

    def source_access(self, connection_id: str) -> tuple[str, dict[str, Any] | None]:
        """The decrypted URI and SSH settings, in one read: what opening the source needs."""
        doc = self._connection_doc(connection_id)
        return self.cipher.decrypt(doc["connection_uri"]), self._ssh_of(doc, {})

    def _ssh_of(self, doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any] | None:
        sealed = doc.get("ssh_settings")
        if "ssh_settings" in changes:
            sealed = self._sealed_ssh(changes["ssh_settings"], sealed)
        if not changes.get("use_ssh", doc.get("use_ssh")) or not sealed:
            return None
        return {
            k: self.cipher.decrypt(v) if k in SSH_SECRETS and v is not None else v
            for k, v in sealed.items()
        }

    def _sealed(self, value: str | None, stored: str | None) -> str | None:
        """A secret to store: encrypted; the mask sent back keeps the stored one."""
        if value == MASK:
            return stored
        return None if value is None else self.cipher.encrypt(value)

    def _sealed_ssh(
        self, settings: dict[str, Any] | None, stored: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if settings is None:
            return None
        return {
            k: self._sealed(v, (stored or {}).get(k)) if k in SSH_SECRETS else v
            for k, v in settings.items()
        }

    def mark_deleting(self, connection_id: str) -> str:
        """Mark a connection `deleting` (tdsync.store.catalogue_store.delete_connection); its id."""
        doc = self._connection_doc(connection_id)
        with storage_errors():
            self._journaled.update_one({"_id": doc["_id"]}, {"$set": {"deleting": True}})
        return str(doc["_id"])

    def delete(self, connection_id: str) -> None:
        with storage_errors():
            self._journaled.delete_one({"_id": ObjectId(connection_id)})

    def mark_refreshed(self, connection_id: str, now: datetime) -> bool:
        """Record a refresh's end on the connection unless it is deleted or being deleted: one
        conditional write, ordered with the delete's `deleting` mark. False when it was."""
        with storage_errors():
            marked = self.collection.update_one(
                {"_id": object_id(connection_id), "deleting": {"$ne": True}},
                {"$max": {"last_refreshed_at": now}},
            )
        return bool(marked.matched_count)

    def _connection_doc(self, id_or_alias: str) -> dict[str, Any]:
        try:
            alias = normalise_alias(id_or_alias)
        except ValueError:
            alias = id_or_alias  # no connection has such an alias: not found below
        query: dict[str, Any] = {"alias": alias}
        if ObjectId.is_valid(id_or_alias):
            query = {"$or": [{"_id": ObjectId(id_or_alias)}, {"alias": alias}]}
        with storage_errors():
            doc = self.collection.find_one(query)
        if doc is None:
            raise ConnectionNotFound(
                f"database connection {id_or_alias!r} not found", {"db_connection_id": id_or_alias}
            )
        return doc

    def _connection(self, doc: dict[str, Any]) -> DatabaseConnection:
        return DatabaseConnection.from_doc(
            doc, mask_uri(self.cipher.decrypt(doc["connection_uri"]))
        )


# The ssh_settings fields stored encrypted and shown as the mask.
SSH_SECRETS = ("password", "private_key", "private_key_password")


def _check_ssh(doc: dict[str, Any]) -> None:
    if doc.get("use_ssh") and not doc.get("ssh_settings"):
        raise ValidationFailed(
            "use_ssh is true but ssh_settings is missing", {"field": "ssh_settings"}
        )
    ssh = doc.get("ssh_settings") or {}
    if doc.get("use_ssh") and not (ssh.get("password") or ssh.get("private_key")):
        raise ValidationFailed(
            "ssh_settings needs a password or a private_key", {"field": "ssh_settings"}
        )


def _alias(alias: str) -> str:
    try:
        return normalise_alias(alias)
    except ValueError as exc:
        raise ValidationFailed(f"alias: {exc}", {"field": "alias"}) from None
