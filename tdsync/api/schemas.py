"""Shell (HTTP): Request bodies of the API. Responses are the catalogue's own models (tdsync.domain.models).

Every field of the Dataherald engine's and service's request models is honoured or refused here
with a 422 naming it (README, "Dataherald compatibility"); other unknown fields are ignored. In a
table description's PUT, as in the engine, a field left out or null is left unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from tdsync.domain.cron import cron_problem
from tdsync.domain.limits import (
    ALIAS_MAX_CHARS,
    CATEGORIES_MAX,
    CATEGORY_MAX_CHARS,
    TEXT_MAX_CHARS,
    check_metadata_size,
    normalise_alias,
)
from tdsync.domain.models import DATA_MAX_AGE_S
from tdsync.domain.scan_model import DataMaxAge

OBJECT_ID_PATTERN = r"^[0-9a-fA-F]{24}$"

ObjectIdStr = Annotated[
    str, Field(pattern=OBJECT_ID_PATTERN, examples=["64fa09446cec0b4ff60d3ae3"])
]
# Path ids are checked by the route (malformed -> 400 invalid_object_id, SPEC), so the pattern is
# documented for clients without FastAPI enforcing it as a 422.
IdInPath = Annotated[
    str,
    Path(
        json_schema_extra={"pattern": OBJECT_ID_PATTERN},
        examples=["64fa09446cec0b4ff60d3ae3"],
    ),
]
Alias = Annotated[
    str,
    Field(
        min_length=1,
        max_length=ALIAS_MAX_CHARS,
        description="unique; stored NFKC-normalised and trimmed, without control characters",
        examples=["sales"],
    ),
    AfterValidator(normalise_alias),
]
ConnectionUri = Annotated[
    str,
    Field(
        min_length=1,
        max_length=4000,
        description="SQLAlchemy URL; stored encrypted, returned with the password masked",
        examples=["postgresql://reader:secret@db.internal:5432/sales"],
    ),
]
SchemaName = Annotated[str, Field(min_length=1, max_length=200)]
CronString = Annotated[str, Field(description="cron expression, e.g. `0 * * * *`")]


def _cron(value: str | None) -> str | None:
    problem = cron_problem(value) if value is not None else None
    if problem:
        raise ValueError(problem)
    return value.strip() if value is not None else None


INT64_RANGE = (-(2**63), 2**63 - 1)


def _storable(value: Any, where: str = "metadata") -> Any:
    """Free-form JSON that MongoDB can store: no `$`-prefixed or NUL-holding keys, 64-bit ints."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("$") or "\x00" in key:
                raise ValueError(f"{where}: key {key!r} cannot be stored (no leading '$', no NUL)")
            _storable(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _storable(item, f"{where}[{index}]")
    elif isinstance(value, int) and not INT64_RANGE[0] <= value <= INT64_RANGE[1]:
        raise ValueError(f"{where}: {value} does not fit in a 64-bit integer")
    return value


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_storable),
    AfterValidator(check_metadata_size),
    Field(description="free-form JSON object (at most 256 KiB)"),
]


def _not_null(value: Any, info: ValidationInfo) -> Any:
    # A PUT may leave these out but cannot blank them.
    if value is None:
        raise ValueError(f"{info.field_name} cannot be null")
    return value


def _refused(value: Any, info: ValidationInfo) -> Any:
    # Dataherald fields tdsync has no way to honour: said, rather than dropped with a 200.
    if value is not None:
        raise ValueError(
            f"{info.field_name} is not supported by tdsync: {_REFUSED[info.field_name]}"
        )
    return value


_REFUSED = {
    "file_storage": "tdsync stores no files (give an SSH private key in ssh_settings.private_key)",
    "path_to_credentials_file": "tdsync reads no file of its own host (give an SSH private key "
    "in ssh_settings.private_key)",
    "bigquery_credential_file_content": "BigQuery is not a supported dialect",
    "sqlite_file_path": "give a SQLite file as connection_uri `sqlite:///path`",
}
Refused = Annotated[Any, Field(description="refused unless null")] | SkipJsonSchema[None]


class SshSettings(BaseModel):
    """How to reach the source through an SSH server (the engine's `ssh_settings`)."""

    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    username: Annotated[str, Field(min_length=1, max_length=255)]
    password: Annotated[str, Field(max_length=4000)] | None = None
    private_key: Annotated[str, Field(max_length=20_000, description="PEM text")] | None = None
    private_key_password: Annotated[str, Field(max_length=4000)] | None = None


class _ConnectionFields(BaseModel):
    use_ssh: bool | None = None
    ssh_settings: SshSettings | None = None
    llm_api_key: Annotated[str, Field(max_length=4000)] | None = Field(
        default=None, description="stored encrypted, returned masked; tdsync itself never uses it"
    )
    file_storage: Refused = None
    path_to_credentials_file: Refused = None
    bigquery_credential_file_content: Refused = None
    sqlite_file_path: Refused = None

    _check_refused = field_validator(*_REFUSED)(_refused)


AutoScan = Annotated[
    bool, Field(description="scan the tables each refresh finds new, restored or renamed")
]
ScanSchedule = Annotated[
    CronString, Field(description="cron (UTC) for a changed-only scan of the whole connection")
]


class ConnectionCreate(_ConnectionFields):
    alias: Alias
    connection_uri: ConnectionUri
    schemas: list[SchemaName] | None = Field(
        default=None, description="schemas to catalogue; null: the database's default schema"
    )
    refresh_schedule: CronString | None = None
    auto_scan: AutoScan = False
    scan_schedule: ScanSchedule | None = None
    data_max_age_s: DataMaxAge = DATA_MAX_AGE_S
    metadata: Metadata | None = None

    _check_cron = field_validator("refresh_schedule", "scan_schedule")(_cron)

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude=set(_REFUSED), exclude_none=True)


class ConnectionUpdate(_ConnectionFields):
    alias: Alias | SkipJsonSchema[None] = None
    connection_uri: ConnectionUri | SkipJsonSchema[None] = None
    schemas: list[SchemaName] | None = None
    refresh_schedule: CronString | None = None
    auto_scan: AutoScan | SkipJsonSchema[None] = None
    scan_schedule: ScanSchedule | None = None
    data_max_age_s: DataMaxAge | SkipJsonSchema[None] = None
    metadata: Metadata | None = None

    _check_cron = field_validator("refresh_schedule", "scan_schedule")(_cron)
    _check_set = field_validator("alias", "connection_uri", "auto_scan", "data_max_age_s")(
        _not_null
    )

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude=set(_REFUSED))


Text = Annotated[str, Field(max_length=TEXT_MAX_CHARS)]
Category = Annotated[str, Field(max_length=CATEGORY_MAX_CHARS)]


class ForeignKeyUpdate(BaseModel):
    field_name: Annotated[str, Field(min_length=1)]
    reference_table: Annotated[str, Field(min_length=1)]


class ColumnUpdate(BaseModel):
    """A column's people's fields; null or absent: unchanged. `categories: []` clears them (and
    `low_cardinality`). The structural fields a scan reads from the database may be sent back as
    they are; a different value is refused (tdsync.store.descriptions.STRUCTURAL_FIELDS)."""

    name: Annotated[str, Field(min_length=1)]
    description: Text | None = None
    categories: Annotated[list[Category], Field(max_length=CATEGORIES_MAX)] | None = None
    low_cardinality: bool | None = None
    data_type: str | None = None
    is_primary_key: bool | None = None
    nullable: bool | None = None
    foreign_key: ForeignKeyUpdate | None = None

    def changes(self) -> dict[str, Any]:
        changes = self.model_dump(exclude_none=True, exclude={"name"})
        if "categories" in changes and "low_cardinality" not in changes:
            # Categories are what makes a column low-cardinality, in the engine as here.
            changes["low_cardinality"] = bool(changes["categories"])
        return changes


Examples = Annotated[
    list[dict[str, Any]],
    AfterValidator(lambda rows: _storable(rows, "examples")),
    Field(description="sample rows; a later scan replaces them with rows it reads"),
]


class DescriptionUpdate(BaseModel):
    """People's fields (what refresh and scan never overwrite) and example rows."""

    description: Text | None = None
    columns: list[ColumnUpdate] | None = None
    examples: Examples | None = None
    metadata: Metadata | None = None

    @field_validator("columns")
    @classmethod
    def _columns_once_each(cls, columns: list[ColumnUpdate] | None) -> list[ColumnUpdate] | None:
        names = [c.name for c in columns or []]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"columns listed more than once: {', '.join(repeated)}")
        return columns

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, include={"description", "examples", "metadata"})

    def column_changes(self) -> dict[str, dict[str, Any]]:
        return {c.name: c.changes() for c in self.columns or []}


class RefreshRequest(BaseModel):
    db_connection_id: ObjectIdStr
    allow_empty_schemas: list[SchemaName] | None = Field(
        default=None,
        description=(
            "schemas you confirm are empty now: this refresh deprecates their tables instead of "
            "answering 400 empty_database (once; nothing is remembered)"
        ),
    )
