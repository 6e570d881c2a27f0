"""`GET /health`: is the API up and can it reach the catalogue's MongoDB. Never needs the API key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tdsync.api.deps import State
from tdsync.api.errors import STORAGE_FAILURES
from tdsync.errors import StorageUnavailable, TdsyncError

router = APIRouter(tags=["health"])


class Healthy(BaseModel):
    status: str = "ok"
    mongo: str = "ok"


class Unhealthy(BaseModel):
    status: str = "unavailable"
    mongo: str = "unreachable"
    error_code: str = StorageUnavailable.error_code
    message: str
    detail: object = None


@router.get(
    "/health",
    response_model=Healthy,
    responses={503: {"model": Unhealthy, "description": "MongoDB is unreachable"}},
    summary="Liveness and MongoDB reachability",
)
async def health(state: State) -> Healthy | JSONResponse:
    try:
        await run_in_threadpool(lambda: state.store().ping())
    except STORAGE_FAILURES as exc:
        return _unhealthy(
            StorageUnavailable(
                "the catalogue's MongoDB is unreachable", {"reason": type(exc).__name__}
            )
        )
    except TdsyncError as exc:  # also an embedded server that would not start, or a bad key
        return _unhealthy(exc)
    return Healthy()


def _unhealthy(error: TdsyncError) -> JSONResponse:
    body = Unhealthy(error_code=error.error_code, message=error.message, detail=error.detail)
    return JSONResponse(body.model_dump(mode="json"), status_code=503)
