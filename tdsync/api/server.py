"""Serving the API with uvicorn: `tdsync api [--host] [--port]`, or `python -m tdsync.api.server`."""

from __future__ import annotations

import argparse

import uvicorn

from tdsync.api.app import create_app
from tdsync.config import Settings
from tdsync.credentials import load_cipher

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    settings = Settings.from_env()
    load_cipher(settings)  # a missing or wrong encryption key stops start-up, not the first request
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
    serve(args.host, args.port)
