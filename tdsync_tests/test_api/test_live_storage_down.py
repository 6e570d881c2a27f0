"""MongoDB unreachable: a real `tdsync api` process pointed at a port nothing listens on."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tdsync_tests.test_api.live import ApiProcess, free_port


@pytest.fixture(scope="module")
def api_without_mongo(
    api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    dead = f"mongodb://127.0.0.1:{free_port()}/?retryWrites=false"
    server = ApiProcess(
        {**api_env, "TDSYNC_MONGO_URI": dead}, tmp_path_factory.mktemp("dead") / "server.log"
    )
    yield server
    server.stop()


REQUESTS = [
    ("GET", "/api/v1/database-connections", None),
    ("GET", "/api/v1/database-connections/64fa09446cec0b4ff60d3ae3", None),
    (
        "POST",
        "/api/v1/database-connections",
        {"alias": "down", "connection_uri": "postgresql://postgres@127.0.0.1:5432/postgres"},
    ),
    (
        "POST",
        "/api/v1/table-descriptions/refresh",
        {"db_connection_id": "64fa09446cec0b4ff60d3ae3"},
    ),
    ("GET", "/api/v1/table-descriptions?db_connection_id=64fa09446cec0b4ff60d3ae3", None),
    ("GET", "/api/v1/table-descriptions/64fa09446cec0b4ff60d3ae3", None),
    ("PUT", "/api/v1/table-descriptions/64fa09446cec0b4ff60d3ae3", {"description": "x"}),
    ("DELETE", "/api/v1/database-connections/64fa09446cec0b4ff60d3ae3", None),
]


def test_every_route_answers_503_storage_unavailable_and_health_says_so(
    api_without_mongo: ApiProcess,
):
    def call(request) -> httpx.Response:
        method, path, body = request
        with api_without_mongo.client() as client:
            return client.request(method, path, json=body)

    # Each waits out the driver's server-selection timeout: all at once, to wait only once.
    with ThreadPoolExecutor(len(REQUESTS) + 1) as pool:
        health = pool.submit(call, ("GET", "/health", None))
        responses = list(pool.map(call, REQUESTS))

    assert [(r.status_code, r.json()["error_code"]) for r in responses] == [
        (503, "storage_unavailable")
    ] * len(REQUESTS)
    assert health.result().status_code == 503
    assert health.result().json()["status"] == "unavailable"
    assert health.result().json()["mongo"] == "unreachable"
    assert "Traceback" not in api_without_mongo.log()
