"""TDSYNC_API_KEY against a real `tdsync api` process: every request but /health needs the key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tdsync.api.auth import bearer_matches
from tdsync_tests.test_api.live import ApiProcess

API_KEY = "k3y-for-tests-only"


@pytest.fixture(scope="module")
def keyed_api(
    api_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    server = ApiProcess(
        {**api_env, "TDSYNC_API_KEY": API_KEY}, tmp_path_factory.mktemp("keyed") / "server.log"
    )
    yield server
    server.stop()


REQUESTS = [
    ("GET", "/api/v1/database-connections", None),
    ("POST", "/api/v1/database-connections", {"alias": "a", "connection_uri": "sqlite://"}),
    ("GET", "/api/v1/database-connections/64fa09446cec0b4ff60d3ae3", None),
    ("DELETE", "/api/v1/database-connections/64fa09446cec0b4ff60d3ae3", None),
    ("POST", "/api/v1/table-descriptions/refresh", {"db_connection_id": "nope"}),
    ("GET", "/api/v1/table-descriptions?db_connection_id=64fa09446cec0b4ff60d3ae3", None),
    ("PUT", "/api/v1/table-descriptions/64fa09446cec0b4ff60d3ae3", {}),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", f"Basic {API_KEY}", API_KEY, "Bearer", f"Bearer {API_KEY}x"],
)
@pytest.mark.parametrize(("method", "path", "body"), REQUESTS)
def test_a_request_without_the_right_bearer_key_is_401(
    keyed_api: ApiProcess, authorization, method, path, body
):
    headers = {"Authorization": authorization} if authorization else {}

    with keyed_api.client() as client:
        response = client.request(method, path, json=body, headers=headers)

    assert response.status_code == 401
    assert response.json()["error_code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_right_key_opens_every_route(keyed_api: ApiProcess):
    with keyed_api.client(headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        listed = client.get("/api/v1/database-connections")
        malformed = client.post(
            "/api/v1/table-descriptions/refresh", json={"db_connection_id": "x"}
        )
        spec = client.get("/openapi.json")

    assert listed.status_code == 200
    assert malformed.status_code == 422  # past the key check, into validation
    assert spec.status_code == 200
    assert "HTTPBearer" in spec.json()["components"]["securitySchemes"]


def test_health_needs_no_key(keyed_api: ApiProcess):
    with keyed_api.client() as client:
        response = client.get("/health")

    assert (response.status_code, response.json()["status"]) == (200, "ok")


def test_the_key_is_never_logged(keyed_api: ApiProcess):
    with keyed_api.client(headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        client.get("/api/v1/database-connections")

    assert API_KEY not in keyed_api.log()


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ("Bearer secret", True),
        ("bearer secret", True),
        ("Bearer  secret ", True),
        ("Bearer secreT", False),
        ("Bearer secret2", False),
        ("Token secret", False),
        ("", False),
        (None, False),
        ("Bearer sécret", False),  # non-ASCII compared as bytes, not an error
    ],
)
def test_bearer_matching(header, matches):
    assert bearer_matches(header, "secret") is matches


def test_health_without_the_key_says_only_whether_the_api_is_up(keyed_api: ApiProcess):
    with keyed_api.client() as client:
        anonymous = client.get("/health")
        wrong = client.get("/health", headers={"Authorization": "Bearer wrong-key"})
        holder = client.get("/health", headers={"Authorization": f"Bearer {API_KEY}"})

    assert (anonymous.status_code, anonymous.json()) == (200, {"status": "ok"})
    assert wrong.json() == {"status": "ok"}
    assert (holder.status_code, holder.json()) == (200, {"status": "ok", "mongo": "ok"})
