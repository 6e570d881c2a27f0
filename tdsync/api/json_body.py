"""Shell (HTTP): JSON request bodies are read strictly, before any route sees them.

FastAPI answers a body it cannot decode (invalid UTF-8, nesting deep enough to exhaust Python's
recursion) with a bare 400, and Python's json accepts `NaN`, `Infinity` and `1e999`, which would
be stored as numbers no JSON client can read back (or as null). Here every such body is a 422
`validation_error` saying what is wrong, in the same shape as FastAPI's own `json_invalid` error.
"""

from __future__ import annotations

import email.message
import json
import math
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tdsync.api.errors import error_json
from tdsync.domain.errors import ValidationFailed

# Deeper than any real request (metadata included) and well inside MongoDB's 100 levels.
MAX_DEPTH = 32
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def json_problem(body: bytes) -> str | None:
    """Why `body` is not acceptable JSON (None when it is)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not valid UTF-8 (byte {exc.start})"
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        return f"the body is nested more than {MAX_DEPTH} levels deep"
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an integer of thousands of digits
        return str(exc)
    return _shape_problem(value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of a 64-bit float's range")
    return value


def _shape_problem(value: Any) -> str | None:
    """Too deep, or a string MongoDB cannot store (a lone surrogate, sent as a `\\ud800` escape)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"the body is nested more than {MAX_DEPTH} levels deep"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending += [(child, depth + 1) for child in children]
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "the body holds a string that is not valid Unicode (a lone surrogate)"
    return None


def _is_json(headers: Headers) -> bool:
    # As FastAPI decides whether to parse a body as JSON.
    content_type = headers.get("content-type")
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class StrictJsonMiddleware:
    """Reads a JSON request body whole (BodyLimitMiddleware, outside this one, caps its size),
    refuses it when `json_problem` finds one, else hands it on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in BODY_METHODS
            or not _is_json(Headers(scope=scope))
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = json_problem(body) if body else None
        if problem is not None:
            error = ValidationFailed(
                f"body: {problem}", [{"loc": ["body"], "msg": problem, "type": "json_invalid"}]
            )
            await error_json(error)(scope, receive, send)
            return
        pending: list[Message] = [{"type": "http.request", "body": body}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)
