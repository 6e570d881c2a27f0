"""Shell (HTTP): Every failure leaves the API as JSON `{error_code, message, detail}`, never as a traceback.

TdsyncError carries its own status and code; validation errors, unknown routes, MongoDB outages
and anything unexpected are translated here. Nothing a client sees or a log line holds repeats
a password: request bodies are not echoed back and messages are scrubbed.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

import bson.errors
import pymongo.errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tdsync.api.streaming import AnswerCut
from tdsync.config.credentials import scrub
from tdsync.domain.errors import TdsyncError, ValidationFailed
from tdsync.domain.models import plain_json
from tdsync.store import STORE_FAILURES, storage_unavailable

log = logging.getLogger("tdsync.api")

# Driver failures that mean "the catalogue's MongoDB cannot be reached", wherever they surface
# (the store turns its own into StorageUnavailable; this catches any that escape it).
STORAGE_FAILURES = (*STORE_FAILURES, pymongo.errors.WTimeoutError)

HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error_code: str
    message: str
    detail: Any = None


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can answer."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}
        for status in statuses
    }


_DESCRIPTIONS = {
    400: "invalid_object_id, invalid_database_connection or empty_database",
    401: "unauthorized: TDSYNC_API_KEY is set and the bearer token is missing or wrong",
    404: "database_connection_not_found or table_description_not_found",
    409: "duplicate_alias, or connection_busy: another run of the connection did not finish in time",
    413: "request_too_large: the request body is over the API's limit (16 MiB)",
    422: "validation_error",
    503: "storage_unavailable: the catalogue's MongoDB is unreachable",
}


def error_json(error: TdsyncError, headers: dict[str, str] | None = None) -> JSONResponse:
    # detail may hold datetimes or ObjectIds; whatever JSON cannot hold is shown as text.
    body = plain_json(error.as_dict())
    return JSONResponse(body, status_code=error.http_status, headers=headers)


async def _tdsync_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TdsyncError)
    return error_json(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # `input` and `ctx` may hold the whole body (a connection URI with its password): left out.
    problems = [
        {
            "loc": [str(part) for part in err.get("loc", ()) if not _union_member(part)],
            "msg": scrub(str(err.get("msg", ""))),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    # A union body (an object or a list of them) fails once per member: the member of the
    # other shape only says "Input should be a valid list"; the one of the body's shape says
    # what is wrong.
    shaped = [p for p in problems if not (len(p["loc"]) <= 1 and p["type"] in _SHAPE_ERRORS)]
    problems = shaped or problems
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"])
    message = f"{where}: {first['msg']}" if where else first["msg"]
    return error_json(ValidationFailed(message, problems))


def _union_member(part: object) -> bool:
    """pydantic's name for the member of a union body that failed (`function-after[...]`,
    `list[...]`): not a field, so a person (and a client) reads `body.metadata`, not
    `body.function-after[_something_to_scan(), SyncSchemasRequest].metadata`."""
    return isinstance(part, str) and bool(_UNION_MEMBER.fullmatch(part))


_SHAPE_ERRORS = {"list_type", "dict_type", "model_type", "model_attributes_type"}
_UNION_MEMBER = re.compile(r"[a-z][\w-]*\[.*\]")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
    body = {"error_code": code, "message": str(exc.detail), "detail": None}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    # A string MongoDB cannot hold (a lone UTF-16 surrogate, a NUL in a key) got past validation.
    return error_json(
        ValidationFailed(
            "a value in the request cannot be stored (invalid UTF-8 text or key)",
            {"reason": type(exc).__name__},
        )
    )


async def _storage_failure(request: Request, exc: Exception) -> JSONResponse:
    return error_json(storage_unavailable(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TdsyncError, _tdsync_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for unstorable in (
        UnicodeEncodeError,
        bson.errors.InvalidDocument,
        bson.errors.InvalidStringData,
    ):
        app.add_exception_handler(unstorable, _unstorable_value)
    for failure in STORAGE_FAILURES:
        app.add_exception_handler(failure, _storage_failure)


class CatchAllMiddleware:
    """Anything unexpected becomes a JSON 500 without a traceback, logged without secrets.

    Starlette's own last-resort handler re-raises after answering, which would print the raw
    traceback to the server log; this one stops the exception here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except AnswerCut:
            # A streamed list whose store failed after its first byte (logged where it
            # failed): ending without the last body message makes the server close the
            # connection, so the client sees a cut answer, never complete-looking JSON.
            return
        except Exception as exc:
            log.error(
                "unexpected error on %s %s: %s",
                scope.get("method"),
                scope.get("path"),
                scrub("".join(traceback.format_exception(exc))),
            )
            if started:
                return  # half sent: the server closes the connection (no raw traceback)
            response = JSONResponse(
                {
                    "error_code": "internal_error",
                    "message": f"unexpected server error ({type(exc).__name__}); see the server log",
                    "detail": None,
                },
                status_code=500,
            )
            await response(scope, receive, send)
