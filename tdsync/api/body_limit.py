"""Shell (HTTP): A cap on request bodies, so that one request cannot make the API read gigabytes into memory.

A declared `Content-Length` over the cap is refused before anything is read (the server holds a
body to its declared length). A body without one (chunked) is read here, up to the cap, and
handed on whole. Either way an oversized request is answered 413 `request_too_large` in the
API's error shape, and no route runs.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tdsync.api.errors import error_json
from tdsync.domain.errors import RequestTooLarge

# Far above any real request (sync-schemas naming 100,000 description ids is about 3 MB) and far
# below what would hurt the server; MongoDB could not store a larger document anyway.
MAX_BODY_BYTES = 16 * 1024 * 1024


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if declared.strip().isdigit() and int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = RequestTooLarge(
            f"the request body is larger than the API's limit of {self.max_bytes:,} bytes",
            {"max_bytes": self.max_bytes},
        )
        await error_json(error, headers={"Connection": "close"})(scope, receive, send)
