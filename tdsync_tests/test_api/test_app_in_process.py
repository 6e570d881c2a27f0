"""The app in-process (TestClient): failures that are hard to provoke in a server process."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pymongo.errors
import pytest
from fastapi.testclient import TestClient

from tdsync.api.app import create_app
from tdsync.config.settings import Settings
from tdsync.store.client import _stores

SECRET_URI = "postgresql://app:Sup3r-s3cret@db.internal:5432/sales"


@pytest.fixture
def client(tdsync_env: dict[str, str], settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)

    def explode() -> None:
        raise RuntimeError(f"could not reach {SECRET_URI}")

    def driver_timeout() -> None:
        raise pymongo.errors.ServerSelectionTimeoutError("127.0.0.1:1: connection refused")

    app.add_api_route("/boom", explode)
    app.add_api_route("/driver-timeout", driver_timeout)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_an_unexpected_error_is_a_json_500_without_traceback_or_secret(
    client: TestClient, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.ERROR, logger="tdsync.api"):
        response = client.get("/boom")

    assert response.status_code == 500
    assert response.json()["error_code"] == "internal_error"
    assert "Traceback" not in response.text and "Sup3r-s3cret" not in response.text
    assert "RuntimeError" in caplog.text  # the server log says what happened...
    assert "Sup3r-s3cret" not in caplog.text  # ...without the password


def test_a_driver_failure_outside_the_store_is_503_storage_unavailable(client: TestClient):
    response = client.get("/driver-timeout")

    assert response.status_code == 503
    assert response.json()["error_code"] == "storage_unavailable"


def test_mongo_going_away_after_start_turns_requests_into_503(
    tdsync_env: dict[str, str], tmp_path: Path, settings: Settings
):
    from secantus import SecantusDBServer

    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(tmp_path / "mongo"))
    server.start()
    uri = server.uri.rstrip("/") + "/?retryWrites=false"
    try:
        with TestClient(create_app(settings.model_copy(update={"mongo_uri": uri}))) as client:
            assert client.get("/health").status_code == 200
            assert client.get("/api/v1/database-connections").json() == []
            server._socket.shutdown(socket.SHUT_RDWR)
            server.stop()
            # Both wait out the driver's timeout: side by side, to wait once.
            with ThreadPoolExecutor(2) as pool:
                listed = pool.submit(client.get, "/api/v1/database-connections")
                health = pool.submit(client.get, "/health")
            listed, health = listed.result(), health.result()
    finally:
        for key in [key for key in _stores if key[0] == uri]:
            del _stores[key]  # the cached store points at a server that is gone

    assert (listed.status_code, listed.json()["error_code"]) == (503, "storage_unavailable")
    assert (health.status_code, health.json()["mongo"]) == (503, "unreachable")
