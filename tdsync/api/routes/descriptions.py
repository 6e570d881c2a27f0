"""Table descriptions: list, get, people's edits, and the Dataherald-compatible refresh.

`POST /refresh` runs the `refresh_table_descriptions` job as a Dagster run on the configured
instance (tagged `tdsync/trigger=webhook`) and answers 201 with the connection's full list once
the run has finished. Concurrent refreshes of one connection share one run (tdsync.runs.refresh
joins a refresh of the connection in flight, in any process).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from tdsync import runs
from tdsync.api.deps import ApiState, State, Store, path_id
from tdsync.api.errors import error_responses
from tdsync.api.schemas import OBJECT_ID_PATTERN, DescriptionUpdate, IdInPath, RefreshRequest
from tdsync.models import Status, TableDescription
from tdsync.scan.launch import WEBHOOK_TRIGGER

router = APIRouter(prefix="/table-descriptions", tags=["table descriptions"])


@router.post(
    "/refresh",
    status_code=201,
    response_model=list[TableDescription],
    responses=error_responses(400, 404, 409),
    summary="Refresh a connection's table descriptions (Dataherald-compatible)",
)
async def refresh_table_descriptions(body: RefreshRequest, state: State) -> list[TableDescription]:
    # 404 for an unknown connection before any run is started. Off the event loop: opening the
    # store may wait out a server-selection timeout.
    connection = await run_in_threadpool(
        lambda: state.store().get_connection(body.db_connection_id)
    )
    allow_empty = sorted(set(body.allow_empty_schemas or []))
    return await run_in_threadpool(_refresh, state, connection.id, allow_empty)


def _refresh(
    state: ApiState, connection_id: str, allow_empty_schemas: list[str]
) -> list[TableDescription]:
    runs.refresh(
        connection_id,
        trigger=WEBHOOK_TRIGGER,
        allow_empty_schemas=allow_empty_schemas or None,
        settings=state.settings,
    )
    return state.store().list_descriptions(connection_id)


@router.get(
    "",
    response_model=list[TableDescription],
    responses=error_responses(404),
    summary="List a connection's table descriptions, sorted by schema and table name",
)
def list_table_descriptions(
    store: Store,
    db_connection_id: Annotated[str, Query(pattern=OBJECT_ID_PATTERN)],
    schema_name: str | None = None,
    table_name: str | None = None,
    status: Status | None = None,
) -> list[TableDescription]:
    connection = store.get_connection(db_connection_id)
    return store.list_descriptions(
        connection.id, schema_name=schema_name, table_name=table_name, status=status
    )


@router.get(
    "/{table_description_id}",
    response_model=TableDescription,
    responses=error_responses(400, 404),
    summary="Get a table description",
)
def get_table_description(table_description_id: IdInPath, store: Store) -> TableDescription:
    return store.get_description(path_id(table_description_id, what="table_description_id"))


@router.put(
    "/{table_description_id}",
    response_model=TableDescription,
    responses=error_responses(400, 404),
    summary="Change a table description's people's fields (description, columns, metadata)",
)
def update_table_description(
    table_description_id: IdInPath, body: DescriptionUpdate, store: Store
) -> TableDescription:
    return store.edit_description(
        path_id(table_description_id, what="table_description_id"),
        fields=body.fields(),
        columns=body.column_changes(),
    )
