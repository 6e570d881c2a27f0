"""Request bodies over the API's cap are refused 413 before they are read whole, chunked or not."""

from __future__ import annotations

import json

import httpx

from tdsync.api.body_limit import MAX_BODY_BYTES
from tdsync_tests.test_api.live import unique

CONNECTIONS = "/api/v1/database-connections"
SYNC = "/api/v1/table-descriptions/sync-schemas"


def oversized_ids() -> bytes:
    """A sync-schemas body naming more description ids than fit under the cap."""
    count = MAX_BODY_BYTES // 26 + 1
    return json.dumps({"ids": ["64fa09446cec0b4ff60d3ae3"] * count}).encode()


def chunked(body: bytes, size: int = 1 << 20):
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text[:300]
    assert response.json() == {
        "error_code": "request_too_large",
        "message": f"the request body is larger than the API's limit of {MAX_BODY_BYTES:,} bytes",
        "detail": {"max_bytes": MAX_BODY_BYTES},
    }


def test_a_body_declared_over_the_cap_is_413(api: httpx.Client):
    body = oversized_ids()
    assert len(body) > MAX_BODY_BYTES

    response = api.post(SYNC, content=body, headers={"Content-Type": "application/json"})

    assert_too_large(response)


def test_a_chunked_body_over_the_cap_is_413(api: httpx.Client):
    response = api.post(
        SYNC, content=chunked(oversized_ids()), headers={"Content-Type": "application/json"}
    )

    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_too_large(response)


def test_a_chunked_body_under_the_cap_reaches_its_route(api: httpx.Client, make_sqlite):
    alias = unique("chunked")
    body = json.dumps(
        {"alias": alias, "connection_uri": f"sqlite:///{make_sqlite('CREATE TABLE t (id INT)')}"}
    ).encode()

    created = api.post(
        CONNECTIONS, content=chunked(body, 16), headers={"Content-Type": "application/json"}
    )

    assert created.request.headers.get("transfer-encoding") == "chunked"
    assert created.status_code == 201, created.text
    assert created.json()["alias"] == alias
    assert api.delete(f"{CONNECTIONS}/{created.json()['id']}").status_code in (200, 204)
    # The server still answers on the same client after refusing a large body.
    assert_too_large(api.post(SYNC, content=oversized_ids()))
    assert api.get(CONNECTIONS).status_code == 200
