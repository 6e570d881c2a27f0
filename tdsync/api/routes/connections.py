"""Shell (HTTP): Connections CRUD: `/api/v1/database-connections` (and the Dataherald service's `/api/...`).

A connection is tried (connect once, look for its schemas) before it is stored, so a mistyped
host, password or schema is refused now rather than at its first refresh; a new one has its
tables listed (tdsync.services.connections) before the 201.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from tdsync.api.deps import State, Store, path_id
from tdsync.api.errors import error_responses
from tdsync.api.schemas import ConnectionCreate, ConnectionUpdate, IdInPath
from tdsync.config.settings import Settings
from tdsync.defs.runs import DagsterRunStarter
from tdsync.defs.tags import WEBHOOK_TRIGGER
from tdsync.domain.models import DatabaseConnection
from tdsync.services.connections import change_connection, register_connection

# Registration waits for this at most, whatever TDSYNC_SOURCE_TIMEOUT_S allows a refresh.
CHECK_TIMEOUT_S = 5.0

router = APIRouter(prefix="/database-connections", tags=["database connections"])


@router.post(
    "",
    status_code=201,
    response_model=DatabaseConnection,
    responses=error_responses(400, 409),
    summary="Register a database connection",
)
def create_connection(body: ConnectionCreate, state: State, store: Store) -> DatabaseConnection:
    return register_connection(
        store,
        runs=DagsterRunStarter(store, state.settings, WEBHOOK_TRIGGER),
        timeout_s=_timeout_s(state.settings),
        settings=state.settings,
        **body.fields(),
    )


@router.get("", response_model=list[DatabaseConnection], summary="List database connections")
def list_connections(store: Store) -> list[DatabaseConnection]:
    return store.list_connections()


@router.get(
    "/{db_connection_id}",
    response_model=DatabaseConnection,
    responses=error_responses(400, 404),
    summary="Get a database connection",
)
def get_connection(db_connection_id: IdInPath, store: Store) -> DatabaseConnection:
    return store.get_connection(path_id(db_connection_id, what="db_connection_id"))


@router.put(
    "/{db_connection_id}",
    response_model=DatabaseConnection,
    responses=error_responses(400, 404, 409),
    summary="Change a database connection",
)
def update_connection(
    db_connection_id: IdInPath, body: ConnectionUpdate, state: State, store: Store
) -> DatabaseConnection:
    connection = store.get_connection(path_id(db_connection_id, what="db_connection_id"))
    return change_connection(
        store,
        connection,
        body.changes(),
        timeout_s=_timeout_s(state.settings),
        settings=state.settings,
    )


@router.delete(
    "/{db_connection_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 404),
    summary="Delete a database connection and its table descriptions",
)
def delete_connection(db_connection_id: IdInPath, store: Store) -> Response:
    # A refresh running at this moment, in this process or any other, cleans up after itself
    # (see CatalogueStore.delete_connection): nothing to wait for.
    store.delete_connection(path_id(db_connection_id, what="db_connection_id"))
    return Response(status_code=204)


def _timeout_s(settings: Settings) -> float:
    return min(settings.source_timeout_s, CHECK_TIMEOUT_S)
