"""Connections CRUD: `/api/v1/database-connections`.

A connection is tried (connect once, look for its schemas) before it is stored, so a mistyped
host, password or schema is refused now rather than at its first refresh.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from tdsync.api.deps import State, Store, path_id
from tdsync.api.errors import error_responses
from tdsync.api.schemas import ConnectionCreate, ConnectionUpdate, IdInPath
from tdsync.config import Settings
from tdsync.models import DatabaseConnection
from tdsync.sources import check_connection

# Registration waits for this at most, whatever TDSYNC_SOURCE_TIMEOUT_S allows a refresh.
CHECK_TIMEOUT_S = 5.0

router = APIRouter(prefix="/api/v1/database-connections", tags=["database connections"])


@router.post(
    "",
    status_code=201,
    response_model=DatabaseConnection,
    responses=error_responses(400, 409),
    summary="Register a database connection",
)
def create_connection(body: ConnectionCreate, state: State, store: Store) -> DatabaseConnection:
    _check(body.connection_uri, body.schemas, state.settings)
    return store.add_connection(**body.model_dump())


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
    changes = body.changes()
    if "connection_uri" in changes or changes.get("schemas"):
        _check(
            changes.get("connection_uri") or store.connection_uri(connection.id),
            changes.get("schemas", connection.schemas),
            state.settings,
        )
    return store.update_connection(connection.id, **changes)


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


def _check(connection_uri: str, schemas: list[str] | None, settings: Settings) -> None:
    check_connection(
        connection_uri, schemas, timeout_s=min(settings.source_timeout_s, CHECK_TIMEOUT_S)
    )
