"""The store's server (SecantusDB, its own process) is killed with SIGKILL and restarted.

Mid-refresh, through a real `tdsync api`: the refresh answers 503 `storage_unavailable`, so do
the other routes while the store is down, and once it is back on the same folder and port the
next refresh answers 201 at once (the dead refresh's connection lease does not hold it up) with
the right catalogue: nothing duplicated, no description lost. And what people wrote just before
the crash is kept: their writes are journaled before they are acknowledged.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tdsync.defs import runs
from tdsync.domain.models import Status
from tdsync.store.client import open_store
from tdsync_tests.conftest import until
from tdsync_tests.test_api.live import ApiProcess, isolated_env, settings_for
from tdsync_tests.test_reliability.conftest import StoreProcess, duplicates

HERE = Path(__file__).parent
CONNECTIONS = "/api/v1/database-connections"
DESCRIPTIONS = "/api/v1/table-descriptions"


def test_store_killed_mid_refresh_answers_503_and_the_next_refresh_converges(
    store_process: StoreProcess, tmp_path: Path
):
    flag = tmp_path / "kill-the-store"
    env = {
        **isolated_env(store_process.uri, tmp_path / "api"),
        "TDSYNC_TEST_STORE_PID": str(store_process.proc.pid),
        "TDSYNC_TEST_STORE_PORT": str(store_process.port),
        "TDSYNC_TEST_KILL_FLAG": str(flag),
    }
    source = tmp_path / "shop.db"
    with sqlite3.connect(source) as db:
        db.executescript(
            "CREATE TABLE a (id int); CREATE TABLE b (id int); CREATE TABLE c (id int);"
        )
    api = ApiProcess(
        env,
        tmp_path / "api.log",
        command=[sys.executable, str(HERE / "api_killing_the_store.py"), "api"],
    )
    try:
        with api.client() as client:
            created = client.post(
                CONNECTIONS, json={"alias": "shop", "connection_uri": f"sqlite:///{source}"}
            )
            connection_id = created.json()["id"]
            refresh = {"db_connection_id": connection_id}
            first = client.post(f"{DESCRIPTIONS}/refresh", json=refresh)
            a = next(d for d in first.json() if d["table_name"] == "a")
            described = client.put(f"{DESCRIPTIONS}/{a['id']}", json={"description": "kept"})
            with sqlite3.connect(source) as db:
                db.executescript("DROP TABLE c; CREATE TABLE d (id int); CREATE TABLE e (id int);")

            flag.touch()
            started = time.monotonic()
            failed = client.post(f"{DESCRIPTIONS}/refresh", json=refresh)
            failed_after_s = time.monotonic() - started
            # Each waits out the driver's server-selection timeout: all at once, to wait once.
            with ThreadPoolExecutor(3) as pool:
                while_down = list(
                    pool.map(
                        lambda call: call(),
                        [
                            lambda: httpx.get(f"{api.url}/health", timeout=60),
                            lambda: httpx.get(
                                f"{api.url}{DESCRIPTIONS}", params=refresh, timeout=60
                            ),
                            lambda: httpx.post(
                                f"{api.url}{DESCRIPTIONS}/refresh", json=refresh, timeout=60
                            ),
                        ],
                    )
                )

            store_process.start()  # same folder, same port
            until(lambda: client.get("/health").status_code == 200, "the API sees the store")
            started = time.monotonic()
            converged = client.post(f"{DESCRIPTIONS}/refresh", json=refresh)
            converged_after_s = time.monotonic() - started
    finally:
        api.stop()

    assert created.status_code == 201 and first.status_code == 201
    assert described.status_code == 200
    assert not flag.exists()  # the store was killed at the refresh's write
    assert failed.status_code == 503, failed.text
    assert failed.json()["error_code"] == "storage_unavailable"
    assert failed_after_s < 30
    assert [r.status_code for r in while_down] == [503, 503, 503]
    assert {r.json()["error_code"] for r in while_down[1:]} == {"storage_unavailable"}
    assert converged.status_code == 201, converged.text
    assert converged_after_s < 10  # not held up by the dead refresh's lease (2 minutes)
    rows = {d["table_name"]: (d["status"], d["description"]) for d in converged.json()}
    assert rows == {
        "a": (Status.NOT_SCANNED, "kept"),
        "b": (Status.NOT_SCANNED, None),
        "c": (Status.DEPRECATED, None),
        "d": (Status.NOT_SCANNED, None),
        "e": (Status.NOT_SCANNED, None),
    }
    assert duplicates(open_store(settings_for(env)), connection_id) == []
    assert "Traceback" not in api.log()
    print(
        f"store killed mid-refresh: 503 after {failed_after_s:.1f} s; store back: 201 after {converged_after_s:.1f} s"
    )


def test_what_people_wrote_just_before_the_store_dies_is_kept(
    own_store_env: dict[str, str], store_process: StoreProcess, sqlite_path: Path
):
    with sqlite3.connect(sqlite_path) as db:
        db.executescript("CREATE TABLE orders (id int, state text);")
    settings = settings_for(own_store_env)
    store = open_store(settings)
    connection = store.add_connection(alias="shop", connection_uri=f"sqlite:///{sqlite_path}")
    runs.refresh(connection.id, trigger="cli", settings=settings)
    [orders] = store.list_descriptions(connection.id)

    # Acknowledged, then the server dies at once: kill -9 loses SecantusDB's unjournaled writes
    # of the last fraction of a second.
    store.edit_description(orders.id, fields={"description": "one row per order"}, columns={})
    store.update_connection(connection.id, metadata={"owner": "sales"})
    second = store.add_connection(alias="second", connection_uri=f"sqlite:///{sqlite_path}")
    store_process.kill()
    store_process.start()

    until(lambda: _answers(store), "the client reconnects")
    assert store.get_description(orders.id).description == "one row per order"
    assert store.get_connection(connection.id).metadata == {"owner": "sales"}
    assert store.get_connection(second.id).alias == "second"


def _answers(store) -> bool:
    try:
        store.ping()
        return True
    except Exception:
        return False
