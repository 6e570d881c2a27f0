"""Domain layer: The catalogue's documents, as SPEC.md lists them, and their Mongo form."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer


def utcnow() -> datetime:
    # Mongo keeps milliseconds; truncating here makes stored and returned values compare equal.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def plain_json(value: Any) -> Any:
    """`value` as plain JSON data (dicts, lists, strings, numbers): whatever JSON cannot hold
    (datetimes, ObjectIds...) becomes its text."""
    return json.loads(json.dumps(value, default=str))


def as_utc(value: datetime | None) -> datetime | None:
    """pymongo returns naive datetimes that are UTC; make them aware."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# `2024-01-31T12:00:00.123000+00:00`, as the Dataherald engine writes them: pydantic's default `Z`
# suffix is refused by `datetime.fromisoformat` before Python 3.11, which its clients run on.
Datetime = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), when_used="json")]
DATA_MAX_AGE_S = 7 * 86_400  # a connection's default data_max_age_s


class Status(StrEnum):
    NOT_SCANNED = "NOT_SCANNED"
    SYNCHRONIZING = "SYNCHRONIZING"
    DEPRECATED = "DEPRECATED"
    SCANNED = "SCANNED"
    FAILED = "FAILED"


class TableType(StrEnum):
    TABLE = "TABLE"
    VIEW = "VIEW"
    MATERIALIZED_VIEW = "MATERIALIZED_VIEW"


class ForeignKey(BaseModel):
    field_name: str
    reference_table: str


class ColumnDescription(BaseModel):
    name: str
    data_type: str | None = None
    is_primary_key: bool = False
    nullable: bool = True
    description: str | None = None
    low_cardinality: bool = False
    categories: list[str] | None = None
    foreign_key: ForeignKey | None = None


class SchemaChange(BaseModel):
    """One entry of a description's drift history: what a refresh or scan saw change."""

    detected_at: Datetime
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    type_changed: list[str] = Field(default_factory=list)
    renamed_from: str | None = None  # the table's name before a refresh found it renamed
    # Columns a scan found renamed: old name -> new name (their descriptions follow them).
    renamed_columns: dict[str, str] = Field(default_factory=dict)


class TableDescription(BaseModel):
    model_config = ConfigDict(use_enum_values=False)

    id: str
    db_connection_id: str
    schema_name: str
    table_name: str
    table_type: TableType = TableType.TABLE
    description: str | None = None
    table_schema: str | None = None
    status: Status = Status.NOT_SCANNED
    error_message: str | None = None
    columns: list[ColumnDescription] = Field(default_factory=list)
    examples: list[dict[str, Any]] = Field(default_factory=list)
    last_schema_sync: Datetime | None = None
    last_refreshed_at: Datetime | None = None
    created_at: Datetime | None = None
    metadata: dict[str, Any] | None = None
    schema_changes: list[SchemaChange] = Field(default_factory=list)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TableDescription:
        data = {k: v for k, v in doc.items() if k in cls.model_fields}
        data["id"] = str(doc["_id"])
        for key in ("last_schema_sync", "last_refreshed_at", "created_at"):
            data[key] = as_utc(doc.get(key))
        return cls.model_validate(data)


class SshSettings(BaseModel):
    """How the source is reached through SSH; its secrets always come out as the mask."""

    host: str
    port: int = 22
    username: str
    password: str | None = None
    private_key: str | None = None
    private_key_password: str | None = None


class DatabaseConnection(BaseModel):
    """A registered source database. `connection_uri` here is always the masked form, and so are
    the SSH secrets and `llm_api_key`."""

    id: str
    alias: str
    dialect: str
    connection_uri: str
    schemas: list[str] | None = None
    refresh_schedule: str | None = None
    # Issue 17: scan what a refresh found new, restored or renamed; a changed-only scan on a cron;
    # a changed-only scan re-reads an unchanged table's data once it is older than this.
    auto_scan: bool = False
    scan_schedule: str | None = None
    data_max_age_s: int = DATA_MAX_AGE_S
    metadata: dict[str, Any] | None = None
    use_ssh: bool = False
    ssh_settings: SshSettings | None = None
    llm_api_key: str | None = None
    created_at: Datetime | None = None
    last_refreshed_at: Datetime | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any], masked_uri: str) -> DatabaseConnection:
        data = {k: v for k, v in doc.items() if k in cls.model_fields}
        data["id"] = str(doc["_id"])
        data["connection_uri"] = masked_uri
        data["use_ssh"] = bool(doc.get("use_ssh"))
        data["llm_api_key"] = MASK if doc.get("llm_api_key") else None
        if doc.get("ssh_settings"):
            data["ssh_settings"] = {
                k: MASK if k in _SSH_SECRETS and v else v for k, v in doc["ssh_settings"].items()
            }
        data["created_at"] = as_utc(doc.get("created_at"))
        data["last_refreshed_at"] = as_utc(doc.get("last_refreshed_at"))
        return cls.model_validate(data)


MASK = "*****"  # tdsync.config.credentials.MASK; repeated here, models import nothing of tdsync
_SSH_SECRETS = ("password", "private_key", "private_key_password")


def new_description_doc(
    *,
    db_connection_id: str,
    schema_name: str,
    table_name: str,
    table_type: TableType,
    now: datetime,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """The Mongo document of a table seen for the first time."""
    return {
        "_id": ObjectId(),
        "db_connection_id": db_connection_id,
        "schema_name": schema_name,
        "table_name": table_name,
        "table_type": str(table_type),
        "description": None,
        "table_schema": None,
        "status": str(Status.NOT_SCANNED),
        "error_message": None,
        "columns": [],
        "examples": [],
        "last_schema_sync": None,
        "last_refreshed_at": now,
        "created_at": now,
        "metadata": None,
        "schema_changes": [],
        "fingerprint": fingerprint,
    }
