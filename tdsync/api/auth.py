"""Shell (HTTP): The TDSYNC_API_KEY rule: when a key is set, every request but /health needs `Bearer <key>`
or, as the Dataherald SDK sends it, `X-API-Key: <key>`.

Enforced as ASGI middleware so that it runs before anything else looks at the request (an
unauthenticated client learns nothing, not even whether its body was valid).
"""

from __future__ import annotations

import hmac

from fastapi.security import HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from tdsync.api.errors import error_json
from tdsync.domain.errors import Unauthorized

OPEN_PATHS = frozenset({"/health"})

# Declared on the API routers only so that OpenAPI (and /docs' "Authorize" button) shows the
# scheme; the middleware below is what enforces it.
bearer_scheme = HTTPBearer(auto_error=False, description="TDSYNC_API_KEY, when it is set")


def bearer_matches(authorization: str | None, api_key: str) -> bool:
    """Constant-time check of an `Authorization` header against the configured key."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


def key_matches(headers: Headers, api_key: str) -> bool:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>` (the Dataherald SDK's header)."""
    if bearer_matches(headers.get("authorization"), api_key):
        return True
    x_api_key = headers.get("x-api-key")
    return x_api_key is not None and hmac.compare_digest(
        x_api_key.strip().encode(), api_key.encode()
    )


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if key_matches(Headers(scope=scope), self.api_key):
            await self.app(scope, receive, send)
            return
        error = Unauthorized(
            "a valid `Authorization: Bearer <TDSYNC_API_KEY>` or `X-API-Key` header is required"
        )
        response = error_json(error, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
