"""Shell (HTTP): The FastAPI application: routers, error handlers, the API-key rule and start-up warm-up."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import APIRouter, FastAPI, Security
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from tdsync.api.auth import ApiKeyMiddleware, bearer_scheme
from tdsync.api.body_limit import BodyLimitMiddleware
from tdsync.api.deps import ApiState
from tdsync.api.errors import CatchAllMiddleware, error_responses, install_error_handlers
from tdsync.api.json_body import StrictJsonMiddleware
from tdsync.api.routes import connections, descriptions, health, heartbeat, scan
from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.errors import TdsyncError

log = logging.getLogger("tdsync.api")

ENGINE_PREFIX = "/api/v1"  # the Dataherald engine's paths
SERVICE_PREFIX = "/api"  # the Dataherald service's (and its SDK's)


def create_app(settings: Settings) -> FastAPI:
    state = ApiState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Warm up in the background: start-up must not wait for (or fail on) an absent MongoDB.
        threading.Thread(target=_warm_up, args=(state,), name="tdsync-warm-up", daemon=True).start()
        yield

    app = FastAPI(
        title="tdsync",
        version="0.1.0",
        summary="Keeps a MongoDB catalogue of table descriptions in sync with live SQL databases.",
        lifespan=lifespan,
        docs_url=None,  # served below, from the package's own copy of Swagger UI
        redoc_url=None,  # ReDoc has no packaged copy: it would load from a CDN
    )
    app.state.tdsync = state
    _offline_docs(app)
    install_error_handlers(app)

    # The bearer scheme shows in OpenAPI only when a key is configured: the document says what
    # this server really asks for.
    api = APIRouter(
        dependencies=[Security(bearer_scheme)] if settings.api_key else [],
        responses=error_responses(*((401,) if settings.api_key else ()), 413, 422, 503),
    )
    for module in (connections, descriptions, scan, heartbeat):
        api.include_router(module.router)
    app.include_router(api, prefix=ENGINE_PREFIX)
    # The Dataherald service's paths, as the official `dataherald` SDK calls them: the same
    # handlers, left out of OpenAPI so that the document (and generated clients) list each once.
    app.include_router(api, prefix=SERVICE_PREFIX, include_in_schema=False)
    app.include_router(heartbeat.router, include_in_schema=False)  # the SDK's `/heartbeat`
    app.include_router(health.router)

    # Added first, run last: the key is checked before a body is read, its size before it is parsed.
    app.add_middleware(StrictJsonMiddleware)
    app.add_middleware(BodyLimitMiddleware)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(CatchAllMiddleware)  # added last: outermost, it sees every failure
    return app


DOCS_ASSETS = "/docs-assets"
# Swagger UI 5 (renders OpenAPI 3.1, which FastAPI writes), shipped by fastapi-swagger.
_SWAGGER_UI = resources.files("fastapi_swagger") / "resources"


def _offline_docs(app: FastAPI) -> None:
    """`/docs` with Swagger UI's files served by the API itself (`fastapi-swagger`'s Swagger UI 5): the page
    works on a machine without internet, where FastAPI's default loads them from a CDN."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=_SWAGGER_UI), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )


def _warm_up(state: ApiState) -> None:
    """Open the Dagster instance (and start the embedded store) before the first request.

    An external MongoDB is left to the first request: were it down, warming up would hold the
    store's lock for a whole server-selection timeout and make that request wait twice as long.
    """
    try:
        runs.instance(state.settings)
        if state.settings.embedded:
            state.store()
    except TdsyncError as exc:
        log.warning("tdsync API started without its store: %s", exc.message)
    except Exception as exc:  # never let a warm-up failure kill the server; requests will report it
        log.warning("tdsync API warm-up failed: %s", type(exc).__name__)
