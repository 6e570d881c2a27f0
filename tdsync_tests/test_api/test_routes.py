"""Every route's decisions, fast: the app in-process (`TestClient`), its store replaced by the
in-memory fake (`app.dependency_overrides`) and Dagster runs by a recorder (tdsync.defs.runs is
the boundary): status codes, SPEC error codes, validation, the API key, masking.

The test_live_*.py modules run the same routes in a server process over a real store and runs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from fastapi.testclient import TestClient

from tdsync.api.app import create_app
from tdsync.api.deps import ApiState, api_state, catalogue_store
from tdsync.api.routes import scan as scan_routes
from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.errors import StorageUnavailable
from tdsync_tests.fakes import FakeStore, describe

KEY = "test-api-key"
CONNECTIONS = "/api/v1/database-connections"
DESCRIPTIONS = "/api/v1/table-descriptions"
UNKNOWN_ID = str(ObjectId())


class FakeState(ApiState):
    def __init__(self, settings: Settings, store: FakeStore) -> None:
        super().__init__(settings)
        self.fake = store

    def store(self) -> FakeStore:  # type: ignore[override]
        return self.fake


class RunsRecorder:
    """Stands in for tdsync.defs.runs.refresh: records each call instead of starting a run."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.error: Exception | None = None

    def __call__(self, db_connection_id: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((db_connection_id, kwargs))
        if self.error is not None:
            raise self.error
        return {"added": 0}


@pytest.fixture
def refreshes(monkeypatch: pytest.MonkeyPatch) -> RunsRecorder:
    recorder = RunsRecorder()
    monkeypatch.setattr(runs, "refresh", recorder)
    return recorder


def client_for(store: FakeStore, tmp_path: Path, api_key: str | None = None) -> TestClient:
    settings = Settings(home=tmp_path / "home", dagster_home=tmp_path / "dagster", api_key=api_key)
    app = create_app(settings)
    state = FakeState(settings, store)
    app.dependency_overrides[api_state] = lambda: state
    app.dependency_overrides[catalogue_store] = lambda: store
    return TestClient(app, raise_server_exceptions=False)  # no `with`: no warm-up thread


@pytest.fixture
def client(fake_store: FakeStore, tmp_path: Path, refreshes: RunsRecorder) -> TestClient:
    return client_for(fake_store, tmp_path)


@pytest.fixture
def source(tmp_path: Path) -> str:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    return f"sqlite:///{path}"


def error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message", "detail"}
    return body["error_code"]


# -- the API key, /health, /heartbeat ------------------------------------------------------------


def test_with_a_key_every_route_but_health_needs_bearer_or_x_api_key(fake_store, tmp_path):
    client = client_for(fake_store, tmp_path, api_key=KEY)

    missing = client.get(CONNECTIONS)
    wrong = client.get(CONNECTIONS, headers={"Authorization": "Bearer nope"})
    basic = client.get(CONNECTIONS, headers={"Authorization": f"Basic {KEY}"})
    bearer = client.get(CONNECTIONS, headers={"Authorization": f"Bearer {KEY}"})
    x_api_key = client.get("/api/database-connections", headers={"X-API-Key": KEY})
    heartbeat = client.get("/heartbeat")

    assert error(missing, 401) == "unauthorized"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert error(wrong, 401) == error(basic, 401) == error(heartbeat, 401) == "unauthorized"
    assert bearer.status_code == x_api_key.status_code == 200
    assert client.get("/health").json() == {"status": "ok"}  # open, tells nothing more
    assert client.get("/health", headers={"X-API-Key": KEY}).json() == {
        "status": "ok",
        "mongo": "ok",
    }


def test_the_key_is_checked_before_the_body(fake_store, tmp_path):
    client = client_for(fake_store, tmp_path, api_key=KEY)

    assert error(client.post(CONNECTIONS, content=b"not json"), 401) == "unauthorized"


def test_health_says_503_storage_unavailable_without_telling_where_the_store_is(
    fake_store, tmp_path
):
    fake_store.down = StorageUnavailable("unreachable", {"reason": "mongo.internal:27017"})
    open_client = client_for(fake_store, tmp_path)
    keyed = client_for(fake_store, tmp_path, api_key=KEY)

    answer = open_client.get("/health")
    anonymous = keyed.get("/health")

    assert answer.status_code == 503
    assert answer.json() == {
        "status": "unavailable",
        "mongo": "unreachable",
        "error_code": "storage_unavailable",
        "message": "the catalogue's MongoDB is unreachable",
    }
    assert "mongo.internal" not in answer.text
    assert (anonymous.status_code, anonymous.json()) == (503, {"status": "unavailable"})


def test_heartbeat_answers_nanoseconds_on_both_paths(client):
    assert client.get("/heartbeat").json() > 10**18
    assert client.get("/api/v1/heartbeat").status_code == 200


# -- database connections ------------------------------------------------------------------------


def test_registering_a_connection_answers_201_masked_after_listing_its_tables(
    client, fake_store, refreshes, source
):
    body = {"alias": "shop", "connection_uri": source, "schemas": None}
    created = client.post(CONNECTIONS, json=body)

    assert created.status_code == 201, created.text
    conn = created.json()
    assert conn["alias"] == "shop" and conn["dialect"] == "sqlite"
    [(connection_id, kwargs)] = refreshes.calls
    assert (connection_id, kwargs["trigger"]) == (conn["id"], "webhook")
    assert client.get(f"{CONNECTIONS}/{conn['id']}").json() == conn
    assert [c["id"] for c in client.get("/api/database-connections").json()] == [conn["id"]]


def test_the_password_never_comes_back_and_a_masked_one_keeps_the_stored_one(client, fake_store):
    secret = "postgresql://reader:hunter2@db.internal:5432/sales"
    conn = fake_store.add_connection(alias="sales", connection_uri=secret)

    shown = client.get(f"{CONNECTIONS}/{conn.id}").json()
    listed = client.get(CONNECTIONS).text
    changed = client.put(f"{CONNECTIONS}/{conn.id}", json={"alias": "sales-eu"})

    assert shown["connection_uri"] == "postgresql://reader:*****@db.internal:5432/sales"
    assert "hunter2" not in listed and "hunter2" not in changed.text
    assert changed.json()["alias"] == "sales-eu"
    assert fake_store.connection_uri(conn.id) == secret


def test_a_registration_whose_listing_fails_stores_nothing(client, fake_store, refreshes, source):
    refreshes.error = StorageUnavailable("the catalogue's MongoDB is unreachable")

    answer = client.post(CONNECTIONS, json={"alias": "shop", "connection_uri": source})

    assert error(answer, 503) == "storage_unavailable"
    assert fake_store.list_connections() == []


def test_an_unreachable_source_is_400_without_its_password(client, fake_store):
    uri = "postgresql://reader:hunter2@127.0.0.1:1/sales"

    answer = client.post(CONNECTIONS, json={"alias": "down", "connection_uri": uri})

    assert error(answer, 400) == "invalid_database_connection"
    assert "hunter2" not in answer.text
    assert fake_store.list_connections() == []


def test_connection_errors_follow_the_spec(client, fake_store, source):
    taken = fake_store.add_connection(alias="taken", connection_uri=source).id
    other = fake_store.add_connection(alias="other", connection_uri=source).id

    assert error(
        client.post(CONNECTIONS, json={"alias": "taken", "connection_uri": source}), 409
    ) == ("duplicate_alias")
    assert error(client.put(f"{CONNECTIONS}/{other}", json={"alias": "taken"}), 409) == (
        "duplicate_alias"
    )
    assert error(client.post(CONNECTIONS, json={"alias": "x"}), 422) == "validation_error"
    assert error(client.post(CONNECTIONS, json={"alias": 3, "connection_uri": source}), 422) == (
        "validation_error"
    )
    bad_cron = client.put(f"{CONNECTIONS}/{taken}", json={"refresh_schedule": "every hour"})
    assert error(bad_cron, 422) == "validation_error" and "refresh_schedule" in bad_cron.text
    assert error(client.get(f"{CONNECTIONS}/not-an-id"), 400) == "invalid_object_id"
    assert error(client.get(f"{CONNECTIONS}/{UNKNOWN_ID}"), 404) == "database_connection_not_found"
    assert error(client.put(f"{CONNECTIONS}/{UNKNOWN_ID}", json={"alias": "y"}), 404) == (
        "database_connection_not_found"
    )
    assert error(client.delete(f"{CONNECTIONS}/{UNKNOWN_ID}"), 404) == (
        "database_connection_not_found"
    )
    assert error(client.delete(f"{CONNECTIONS}/nope"), 400) == "invalid_object_id"


def test_deleting_a_connection_deletes_its_descriptions(client, fake_store, source):
    conn = fake_store.add_connection(alias="shop", connection_uri=source).id
    describe(fake_store, conn, "main", "orders")

    deleted = client.delete(f"{CONNECTIONS}/{conn}")

    assert (deleted.status_code, deleted.content) == (204, b"")
    assert error(client.get(f"{CONNECTIONS}/{conn}"), 404) == "database_connection_not_found"
    assert fake_store.descriptions.find({"db_connection_id": conn}) == []


def test_auto_scan_and_scan_schedule_are_taken_and_a_bad_cron_refused(client, fake_store, source):
    conn = fake_store.add_connection(alias="shop", connection_uri=source).id
    url = f"{CONNECTIONS}/{conn}"

    changed = client.put(url, json={"auto_scan": True, "scan_schedule": "0 * * * *"})
    bad = client.put(url, json={"scan_schedule": "every hour"})

    assert (changed.json()["auto_scan"], changed.json()["scan_schedule"]) == (True, "0 * * * *")
    assert changed.json()["data_max_age_s"] == 7 * 86_400
    assert error(bad, 422) == "validation_error" and "scan_schedule" in bad.text


# -- table descriptions --------------------------------------------------------------------------


@pytest.fixture
def shop(fake_store, source) -> str:
    conn = fake_store.add_connection(alias="shop", connection_uri=source).id
    describe(fake_store, conn, "main", "orders", status="SCANNED")
    describe(fake_store, conn, "main", "customers")
    describe(fake_store, conn, "sales", "orders", columns=[{"name": "id", "data_type": "INT"}])
    return conn


def names(response, status: int = 200) -> list[str]:
    assert response.status_code == status, response.text
    return [f"{d['schema_name']}.{d['table_name']}" for d in response.json()]


def test_listing_sorts_by_schema_and_table_and_filters(client, shop):
    listed = client.get(DESCRIPTIONS, params={"db_connection_id": shop})
    scanned = client.get(DESCRIPTIONS, params={"db_connection_id": shop, "status": "SCANNED"})
    dotted = client.get(
        DESCRIPTIONS, params={"db_connection_id": shop, "table_name": "sales.orders"}
    )
    in_schema = client.get(
        DESCRIPTIONS, params={"db_connection_id": shop, "schema_name": "main", "table_name": ""}
    )

    assert names(listed) == ["main.customers", "main.orders", "sales.orders"]
    assert names(scanned) == ["main.orders"]
    assert names(dotted) == ["sales.orders"]
    assert names(in_schema) == ["main.customers", "main.orders"]


def test_listing_pages_in_id_order(client, shop):
    first = client.get(DESCRIPTIONS, params={"db_connection_id": shop, "limit": 2})
    rest = client.get(
        DESCRIPTIONS, params={"db_connection_id": shop, "limit": 2, "after": first.json()[-1]["id"]}
    )

    assert names(first) + names(rest) == ["main.orders", "main.customers", "sales.orders"]


def test_listing_errors_follow_the_spec(client, shop):
    assert error(client.get(DESCRIPTIONS, params={"db_connection_id": UNKNOWN_ID}), 404) == (
        "database_connection_not_found"
    )
    for params in (
        {},
        {"db_connection_id": "nope"},
        {"db_connection_id": shop, "status": "SOMETIMES"},
        {"db_connection_id": shop, "limit": 0},
        {"db_connection_id": shop, "after": "nope"},
    ):
        assert error(client.get(DESCRIPTIONS, params=params), 422) == "validation_error", params


def test_a_description_is_read_and_edited_by_id(client, fake_store, shop):
    [desc_id] = [str(d["_id"]) for d in fake_store.descriptions.find({"schema_name": "sales"})]
    url = f"{DESCRIPTIONS}/{desc_id}"

    read = client.get(url)
    edited = client.put(
        url, json={"description": "Orders", "columns": [{"name": "id", "description": "key"}]}
    )
    unknown = client.put(url, json={"columns": [{"name": "nope", "description": "?"}]})

    assert read.json()["table_name"] == "orders" and read.json()["db_connection_id"] == shop
    assert edited.status_code == 200, edited.text
    assert edited.json()["description"] == "Orders"
    assert edited.json()["columns"][0]["description"] == "key"
    assert error(unknown, 422) == "validation_error"
    assert error(client.get(f"{DESCRIPTIONS}/{UNKNOWN_ID}"), 404) == "table_description_not_found"
    assert error(client.put(f"{DESCRIPTIONS}/{UNKNOWN_ID}", json={"description": "x"}), 404) == (
        "table_description_not_found"
    )
    assert error(client.get(f"{DESCRIPTIONS}/nope"), 400) == "invalid_object_id"


def test_refresh_runs_once_then_answers_201_with_the_connection_list(client, refreshes, shop):
    answer = client.post(
        f"{DESCRIPTIONS}/refresh",
        json={"db_connection_id": shop, "allow_empty_schemas": ["b", "a", "b"]},
    )

    assert names(answer, 201) == [
        "main.customers",
        "main.orders",
        "sales.orders",
    ]
    [(connection_id, kwargs)] = refreshes.calls
    assert connection_id == shop
    assert (kwargs["trigger"], kwargs["allow_empty_schemas"]) == ("webhook", ["a", "b"])


def test_refresh_of_an_unknown_connection_is_404_and_starts_no_run(client, refreshes):
    unknown = client.post(f"{DESCRIPTIONS}/refresh", json={"db_connection_id": UNKNOWN_ID})
    malformed = client.post(f"{DESCRIPTIONS}/refresh", json={"db_connection_id": "nope"})

    assert error(unknown, 404) == "database_connection_not_found"
    assert error(malformed, 422) == "validation_error"
    assert refreshes.calls == []


def test_sync_schemas_validates_its_body_and_knows_its_connections(client, refreshes):
    url = f"{DESCRIPTIONS}/sync-schemas"

    assert error(client.post(url, json={}), 422) == "validation_error"
    assert error(client.post(url, json=[]), 422) == "validation_error"
    assert error(client.post(url, json={"ids": []}), 422) == "validation_error"
    assert error(client.post(url, json={"db_connection_id": "nope"}), 422) == "validation_error"
    assert error(client.post(url, json={"db_connection_id": UNKNOWN_ID}), 404) == (
        "database_connection_not_found"
    )
    assert refreshes.calls == []


def test_sync_schemas_starts_one_scan_per_item_and_merges_its_metadata(
    client, fake_store, shop, refreshes, monkeypatch: pytest.MonkeyPatch
):
    requested = []

    def request_scan(store, settings, **request):
        """Stands in for starting a scan: records it, answers the connection's rows."""
        requested.append(request)
        return store.list_descriptions(request["db_connection_id"], table_name="orders")

    monkeypatch.setattr(scan_routes, "request_scan", request_scan)
    url = f"{DESCRIPTIONS}/sync-schemas"

    one = client.post(url, json={"db_connection_id": shop, "changed_only": True})
    many = client.post(
        "/api/table-descriptions/sync-schemas",
        json=[
            {"db_connection_id": shop, "table_names": ["orders"], "metadata": {"dh": 1}},
            {"db_connection_id": shop},
        ],
    )

    assert names(one, 201) == ["main.orders", "sales.orders"]
    assert requested[0] == {
        "db_connection_id": shop,
        "ids": None,
        "table_names": None,
        "changed_only": True,
        "runs": requested[0]["runs"],
    }
    assert [r["table_names"] for r in requested[1:]] == [["orders"], None]
    assert names(many, 201) == ["main.orders", "sales.orders"] * 2
    assert [d["metadata"] for d in many.json()[:2]] == [{"dh": 1}, {"dh": 1}]
    # A connection with nothing to scan yet is refreshed first, as a webhook refresh.
    requested[0]["runs"].refresh(shop)
    assert [(c, kwargs["trigger"]) for c, kwargs in refreshes.calls] == [(shop, "webhook")]
