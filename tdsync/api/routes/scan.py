"""Shell (HTTP): `POST /api/v1/table-descriptions/sync-schemas`: start a scan, answer with the rows it claimed.

The body is the engine's object or the Dataherald service's (and SDK's) list of
`{db_connection_id, table_names}`, one scan per item. Its `metadata` is merged into the
metadata of the rows it scans (the service finds rows by `metadata.dh_internal`).

The requested descriptions are marked SYNCHRONIZING before the answer (201, sorted by schema and
table name); the scan itself runs as a Dagster run (tdsync.services.scan_requests starts it; in
`local`, in a detached process, tdsync.defs.scan_process), so the request does not wait for it. Poll the descriptions for the outcome.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from tdsync.api.deps import State
from tdsync.api.errors import error_responses
from tdsync.api.schemas import Metadata, ObjectIdStr
from tdsync.defs.runs import DagsterRunStarter
from tdsync.defs.tags import WEBHOOK_TRIGGER
from tdsync.domain.models import TableDescription
from tdsync.services.scan_requests import request_scan

router = APIRouter(prefix="/table-descriptions", tags=["table descriptions"])


class SyncSchemasRequest(BaseModel):
    """Which descriptions to scan: a connection's (all but DEPRECATED ones) or these ids; either
    narrowed to `table_names` (`table` or `schema.table`)."""

    # Either field may be left out, not both: said in the schema too, for generated clients.
    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["db_connection_id"]}, {"required": ["ids"]}]}
    )

    db_connection_id: ObjectIdStr | SkipJsonSchema[None] = None
    ids: Annotated[list[ObjectIdStr], Field(min_length=1)] | SkipJsonSchema[None] = None
    table_names: Annotated[list[str], Field(min_length=1)] | SkipJsonSchema[None] = None
    metadata: Metadata | None = None
    changed_only: bool = Field(
        default=False,
        description="only tables never scanned, FAILED, changed in structure since their scan, "
        "or whose data is older than the connection's data_max_age_s",
    )

    @model_validator(mode="after")
    def _something_to_scan(self) -> SyncSchemasRequest:
        if self.db_connection_id is None and self.ids is None:
            raise ValueError("give db_connection_id or ids")
        return self


@router.post(
    "/sync-schemas",
    status_code=201,
    response_model=list[TableDescription],
    responses=error_responses(400, 404, 409),
    summary="Scan table descriptions (columns, keys, DDL, categories, examples) as a Dagster run",
)
def sync_schemas(
    body: SyncSchemasRequest | Annotated[list[SyncSchemasRequest], Field(min_length=1)],
    state: State,
) -> list[TableDescription]:
    claimed = []
    for request in body if isinstance(body, list) else [body]:
        scanned = request_scan(
            state.store(),
            state.settings,
            db_connection_id=request.db_connection_id,
            ids=request.ids,
            table_names=request.table_names,
            changed_only=request.changed_only,
            runs=DagsterRunStarter(state.store(), state.settings, WEBHOOK_TRIGGER),
        )
        if request.metadata:
            scanned = state.store().merge_metadata([d.id for d in scanned], request.metadata)
        claimed += scanned
    return claimed
