"""Shell (HTTP): Table descriptions: list, get, people's edits, and the Dataherald-compatible refresh.

`POST /refresh` runs the `refresh_table_descriptions` job as a Dagster run on the configured
instance (tagged `tdsync/trigger=webhook`) and answers 201 with the connection's full list once
the run has finished. Concurrent refreshes of one connection share one run (tdsync.defs.runs.refresh
joins a refresh of the connection in flight, in any process).

Both lists are streamed (tdsync.api.streaming): written as they are read from the store.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from tdsync.api.deps import State, Store, path_id
from tdsync.api.errors import error_responses
from tdsync.api.schemas import OBJECT_ID_PATTERN, DescriptionUpdate, IdInPath, RefreshRequest
from tdsync.api.streaming import streamed_descriptions
from tdsync.defs import runs
from tdsync.defs.tags import WEBHOOK_TRIGGER
from tdsync.domain.models import Status, TableDescription

router = APIRouter(prefix="/table-descriptions", tags=["table descriptions"])
PAGE_MAX = 10_000


@router.post(
    "/refresh",
    status_code=201,
    response_model=list[TableDescription],
    responses=error_responses(400, 404, 409),
    summary="Refresh a connection's table descriptions (Dataherald-compatible)",
)
async def refresh_table_descriptions(body: RefreshRequest, state: State) -> Response:
    # 404 for an unknown connection before any run is started. Off the event loop: opening the
    # store may wait out a server-selection timeout.
    connection = await run_in_threadpool(
        lambda: state.store().get_connection(body.db_connection_id)
    )
    allow_empty = sorted(set(body.allow_empty_schemas or []))
    await run_in_threadpool(
        lambda: runs.refresh(
            connection.id,
            trigger=WEBHOOK_TRIGGER,
            allow_empty_schemas=allow_empty or None,
            settings=state.settings,
        )
    )
    return await streamed_descriptions(state.store(), connection.id, status_code=201)


@router.get(
    "",
    response_model=list[TableDescription],
    responses=error_responses(404),
    summary="List a connection's table descriptions, sorted by schema and table name",
    description=(
        "Every description of the connection, sorted by (schema_name, table_name), or one page "
        "of them with `limit` and `after`. The answer is streamed: should the store fail once it "
        "has started, the connection is closed before the closing `]`."
    ),
)
async def list_table_descriptions(
    store: Store,
    db_connection_id: Annotated[str, Query(pattern=OBJECT_ID_PATTERN)],
    schema_name: str | None = None,
    table_name: str | None = None,
    status: Status | None = None,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            le=PAGE_MAX,
            description=(
                f"A page of at most this many descriptions (1 to {PAGE_MAX:,}), in id order "
                "rather than by name. Without `limit` and `after`: every description, sorted "
                "by schema and table name."
            ),
        ),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            pattern=OBJECT_ID_PATTERN,
            description=(
                "The `id` of the last description of the previous page: the page starts after "
                "it (id order; a table renamed or added meanwhile is neither skipped nor repeated)."
            ),
        ),
    ] = None,
) -> Response:
    connection = await run_in_threadpool(store.get_connection, db_connection_id)
    return await streamed_descriptions(
        store,
        connection.id,
        schema_name=schema_name,
        table_name=table_name,
        status=status,
        limit=limit,
        after=after,
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
