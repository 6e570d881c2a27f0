"""Shell (HTTP): Serving the API with uvicorn: `tdsync api [--host] [--port]`, or `python -m tdsync.api.server`."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from tdsync.api.app import create_app
from tdsync.config.settings import Settings
from tdsync.domain.errors import StorageUnavailable
from tdsync.store.client import check_store_at_start

log = logging.getLogger("tdsync.api")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def serve(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    # A missing or wrong encryption key stops start-up, not the first request that needs it.
    try:
        check_store_at_start(settings)
    except StorageUnavailable as exc:  # started all the same: /health says so until it is back
        log.warning("the catalogue's MongoDB does not answer yet: %s", exc.message)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve the tdsync HTTP API.")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    serve(Settings.from_env(), args.host, args.port)  # this process's one read of them
