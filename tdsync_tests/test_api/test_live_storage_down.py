"""MongoDB unreachable: a real `tdsync api` process pointed at a port nothing listens on."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tdsync_tests.test_api.live import ApiProcess, free_port

DEAD_PORT = free_port()
DEAD_URI = f"mongodb://127.0.0.1:{DEAD_PORT}/?retryWrites=false"
API_KEY = "k3y-for-health-tests"


@pytest.fixture(scope="module")
def api_without_mongo(
    api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    server = ApiProcess(
        {**api_env, "TDSYNC_MONGO_URI": DEAD_URI}, tmp_path_factory.mktemp("dead") / "server.log"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_api_without_mongo(
    api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    server = ApiProcess(
        {**api_env, "TDSYNC_MONGO_URI": DEAD_URI, "TDSYNC_API_KEY": API_KEY},
        tmp_path_factory.mktemp("dead-keyed") / "server.log",
    )
    yield server
    server.stop()


def assert_nothing_of_the_store(body: str) -> None:
    """No host, port, timeout or driver message of the store."""
    for revealing in ("127.0.0.1", str(DEAD_PORT), "timeout", "Timeout", "MS", "refused"):
        assert revealing not in body, body


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
    assert_nothing_of_the_store(health.result().text)
    assert "Traceback" not in api_without_mongo.log()


def test_health_with_a_key_set_tells_only_key_holders_why_and_nobody_where(
    keyed_api_without_mongo: ApiProcess,
):
    def health(headers: dict[str, str]) -> httpx.Response:
        with keyed_api_without_mongo.client() as client:
            return client.get("/health", headers=headers)

    # Each waits out the driver's server-selection timeout: side by side, to wait once.
    with ThreadPoolExecutor(2) as pool:
        anonymous = pool.submit(health, {})
        holder = pool.submit(health, {"Authorization": f"Bearer {API_KEY}"})
    anonymous, holder = anonymous.result(), holder.result()

    assert (anonymous.status_code, anonymous.json()) == (503, {"status": "unavailable"})
    assert holder.status_code == 503
    assert holder.json() == {
        "status": "unavailable",
        "mongo": "unreachable",
        "error_code": "storage_unavailable",
        "message": "the catalogue's MongoDB is unreachable",
    }
    assert_nothing_of_the_store(holder.text)
