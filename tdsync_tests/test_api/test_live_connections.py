"""/api/v1/database-connections against a real `tdsync api` process."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from tdsync.store import CatalogueStore
from tdsync_tests.test_api.live import ApiProcess, unique

CONNECTIONS = "/api/v1/database-connections"
PASSWORD = "Pa55-w0rd-never-shown"


def with_password(url: str) -> str:
    # The local PostgreSQL trusts 127.0.0.1, so the password is accepted and ignored: the
    # connection works while carrying a secret that must never come back.
    return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def test_connection_lifecycle_never_shows_the_password(
    api: httpx.Client, live_api: ApiProcess, api_store: CatalogueStore, pg_url: str
):
    uri = with_password(pg_url)
    alias = unique("warehouse")
    bodies: list[str] = []

    created = api.post(
        CONNECTIONS,
        json={
            "alias": alias,
            "connection_uri": uri,
            "schemas": ["public"],
            "refresh_schedule": "0 * * * *",
            "metadata": {"team": "data"},
            "use_ssh": False,  # Dataherald clients send fields tdsync ignores
        },
    )
    assert created.status_code == 201, created.text
    connection = created.json()
    connection_id = connection["id"]
    masked = uri.replace(PASSWORD, "*****")
    assert connection["connection_uri"] == masked
    assert (connection["alias"], connection["dialect"], connection["schemas"]) == (
        alias,
        "postgresql",
        ["public"],
    )
    bodies.append(created.text)

    fetched = api.get(f"{CONNECTIONS}/{connection_id}")
    listed = api.get(CONNECTIONS)
    renamed = api.put(
        f"{CONNECTIONS}/{connection_id}",
        json={"alias": alias + "_renamed", "refresh_schedule": None, "metadata": {"team": "ops"}},
    )
    refreshed = api.post(
        "/api/v1/table-descriptions/refresh", json={"db_connection_id": connection_id}
    )
    bodies += [fetched.text, listed.text, renamed.text, refreshed.text]

    assert fetched.status_code == 200 and fetched.json() == connection
    assert connection_id in [c["id"] for c in listed.json()]
    assert renamed.status_code == 200
    assert (
        renamed.json()["alias"],
        renamed.json()["refresh_schedule"],
        renamed.json()["metadata"],
        renamed.json()["schemas"],
    ) == (alias + "_renamed", None, {"team": "ops"}, ["public"])
    assert refreshed.status_code == 201
    # The stored URI is encrypted; it decrypts to the original.
    assert PASSWORD not in str(api_store.connections.find_one({"alias": alias + "_renamed"}))
    assert api_store.connection_uri(connection_id) == uri

    deleted = api.delete(f"{CONNECTIONS}/{connection_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.get(f"{CONNECTIONS}/{connection_id}").status_code == 404
    assert api_store.descriptions.count_documents({"db_connection_id": connection_id}) == 0
    assert not any(PASSWORD in body for body in bodies)
    assert PASSWORD not in live_api.log()


@pytest.mark.parametrize(
    ("uri", "schemas", "reason"),
    [
        ("definitely not a uri", None, "valid database URI"),
        ("oracle://scott:tiger@db:1521/orcl", None, "unsupported dialect"),
        (f"postgresql://app:{PASSWORD}@127.0.0.1:1/app", None, "cannot be read"),
        ("sqlite:////nonexistent/dir/source.db", None, "does not exist"),
        ("sqlite://", None, "in-memory"),
        ("postgresql://postgres@127.0.0.1:5432/postgres", ["no_such_schema"], "no_such_schema"),
        ("postgresql://postgres@127.0.0.1:5432/a\x00b", None, "cannot be opened"),
    ],
)
def test_a_connection_that_cannot_work_is_refused_with_invalid_database_connection(
    api: httpx.Client, live_api: ApiProcess, uri: str, schemas, reason: str
):
    alias = unique("bad")

    response = api.post(
        CONNECTIONS, json={"alias": alias, "connection_uri": uri, "schemas": schemas}
    )

    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "invalid_database_connection"
    assert reason in response.text
    assert PASSWORD not in response.text
    assert alias not in [c["alias"] for c in api.get(CONNECTIONS).json()]
    assert PASSWORD not in live_api.log()


def test_a_file_that_is_not_a_database_is_refused(api: httpx.Client, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database, just words " * 100)

    response = api.post(
        CONNECTIONS, json={"alias": unique("notes"), "connection_uri": f"sqlite:///{notes}"}
    )

    assert response.status_code == 400
    assert response.json()["error_code"] == "invalid_database_connection"
    assert "not a database" in response.json()["detail"]["reason"]


def test_changing_a_connection_to_a_bad_uri_is_refused_and_keeps_the_old_one(
    api: httpx.Client, make_sqlite
):
    path = make_sqlite("CREATE TABLE t (id INTEGER)")
    created = api.post(
        CONNECTIONS, json={"alias": unique("c"), "connection_uri": f"sqlite:///{path}"}
    )
    connection_id = created.json()["id"]

    response = api.put(
        f"{CONNECTIONS}/{connection_id}", json={"connection_uri": "sqlite:////gone/away.db"}
    )

    assert response.status_code == 400
    assert response.json()["error_code"] == "invalid_database_connection"
    assert api.get(f"{CONNECTIONS}/{connection_id}").json() == created.json()


def test_an_alias_already_taken_is_409_duplicate_alias_on_create_and_on_rename(
    api: httpx.Client, make_sqlite
):
    uri = f"sqlite:///{make_sqlite('CREATE TABLE t (id INTEGER)')}"
    first, second = unique("first"), unique("second")
    assert api.post(CONNECTIONS, json={"alias": first, "connection_uri": uri}).status_code == 201
    other = api.post(CONNECTIONS, json={"alias": second, "connection_uri": uri}).json()

    again = api.post(CONNECTIONS, json={"alias": first, "connection_uri": uri})
    rename = api.put(f"{CONNECTIONS}/{other['id']}", json={"alias": first})

    assert (again.status_code, again.json()["error_code"]) == (409, "duplicate_alias")
    assert (rename.status_code, rename.json()["error_code"]) == (409, "duplicate_alias")
    assert api.get(f"{CONNECTIONS}/{other['id']}").json()["alias"] == second


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("post", {"connection_uri": "sqlite:///x.db"}),  # alias missing
        ("post", {"alias": 3, "connection_uri": "sqlite:///x.db"}),
        ("post", {"alias": "a", "connection_uri": "sqlite:///x.db", "schemas": "main"}),
        ("post", {"alias": "a", "connection_uri": "sqlite:///x.db", "refresh_schedule": "hourly"}),
        ("post", {"alias": "", "connection_uri": "sqlite:///x.db"}),
        ("put", {"alias": None}),
        ("put", {"connection_uri": None}),
        ("put", {"refresh_schedule": "* * * * * *"}),  # six fields: Dagster schedules take five
    ],
)
def test_a_malformed_connection_body_is_422_validation_error(
    api: httpx.Client, method: str, body: dict
):
    url = CONNECTIONS if method == "post" else f"{CONNECTIONS}/64fa09446cec0b4ff60d3ae3"

    response = api.request(method.upper(), url, json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error_code"] == "validation_error"
    assert response.json()["message"]


def test_a_body_that_is_not_json_is_422_validation_error(api: httpx.Client):
    response = api.post(
        CONNECTIONS, content=b'{"alias": ', headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_error"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_malformed_connection_id_in_the_path_is_400_invalid_object_id(
    api: httpx.Client, method: str
):
    response = api.request(method, f"{CONNECTIONS}/not-an-object-id", json={})

    assert response.status_code == 400
    assert response.json()["error_code"] == "invalid_object_id"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_unknown_connection_id_is_404_database_connection_not_found(
    api: httpx.Client, method: str
):
    response = api.request(method, f"{CONNECTIONS}/64fa09446cec0b4ff60d3ae3", json={})

    assert response.status_code == 404
    assert response.json() == {
        "error_code": "database_connection_not_found",
        "message": response.json()["message"],
        "detail": {"db_connection_id": "64fa09446cec0b4ff60d3ae3"},
    }
