"""Shell (HTTP): `GET /health`: is the API up and can it reach the catalogue's MongoDB. Never needs the API key.

It is open to anyone who reaches the port, so it never tells where the store is (hosts, ports,
timeouts, driver messages): with TDSYNC_API_KEY set, a caller without the key learns only
`status`; others also learn whether MongoDB answers and the error code when it does not.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tdsync.api.auth import key_matches
from tdsync.api.deps import State
from tdsync.api.errors import STORAGE_FAILURES
from tdsync.domain.errors import StorageUnavailable, TdsyncError

router = APIRouter(tags=["health"])

# What each failure is called on /health; the server log and the other routes say more.
_MESSAGES = {
    StorageUnavailable.error_code: "the catalogue's MongoDB is unreachable",
    "configuration_error": "the API cannot open its store (encryption key or embedded store); "
    "see the server log",
}


class Health(BaseModel):
    status: str  # ok | unavailable
    mongo: str | None = None  # ok | unreachable; left out for callers without the key
    error_code: str | None = None
    message: str | None = None


@router.get(
    "/health",
    response_model=Health,
    response_model_exclude_none=True,
    responses={503: {"model": Health, "description": "MongoDB is unreachable"}},
    summary="Liveness and MongoDB reachability",
)
async def health(request: Request, state: State) -> Health | JSONResponse:
    api_key = state.settings.api_key
    told = not api_key or key_matches(request.headers, api_key)
    try:
        await run_in_threadpool(lambda: state.store().ping())
    except STORAGE_FAILURES:
        error_code = StorageUnavailable.error_code
    except TdsyncError as exc:  # also an embedded server that would not start, or a bad key
        error_code = exc.error_code
    else:
        return Health(status="ok", mongo="ok" if told else None)
    body = Health(status="unavailable")
    if told:
        body.mongo = "unreachable"
        body.error_code = error_code
        body.message = _MESSAGES.get(error_code, "the catalogue's store cannot be used")
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
