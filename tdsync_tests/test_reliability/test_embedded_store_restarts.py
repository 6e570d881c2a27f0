"""The embedded store's server killed with `kill -9` under a real `tdsync dev` and a real `tdsync api`.

Whichever process sees the server fail first starts it again on its port (the others find it
running), so the API answers again within seconds without a restart, with every row it had, and
so does the Dagster code server's sensor; stopping `tdsync dev` then leaves no store behind. A store started by `tdsync api` outlives it,
as before, and the CLI recovers it too.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx

from tdsync.store.embedded import stop_embedded
from tdsync_tests.conftest import until
from tdsync_tests.test_api.live import ApiProcess, free_port
from tdsync_tests.test_cli.conftest import TDSYNC
from tdsync_tests.test_embedded import servers_on

CONNECTIONS = "/api/v1/database-connections"
DESCRIPTIONS = "/api/v1/table-descriptions"
RECOVERY_LIMIT_S = 15.0
TABLES = 20


def embedded_env(root: Path) -> dict[str, str]:
    """A home of its own with no TDSYNC_MONGO_URI nor key: tdsync runs its own store there."""
    (root / "dagster").mkdir(parents=True, exist_ok=True)
    return {
        "TDSYNC_HOME": str(root / "home"),
        "DAGSTER_HOME": str(root / "dagster"),
        "TDSYNC_MONGO_DB": "tdsync",
        "TDSYNC_SOURCE_TIMEOUT_S": "5",
    }


def without_tdsync(env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TDSYNC_", "DAGSTER_"))}
    return {**base, **env}


def store_pid(home: Path) -> int:
    return json.loads((home / "mongo" / "server.json").read_text())["pid"]


def status(url: str) -> int:
    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.TransportError:
        return 0


def catalogue(client: httpx.Client, source: Path) -> tuple[str, dict[str, str | None]]:
    """Register `source` with TABLES tables, refresh it and describe one table: the rows a crash
    must not lose (the description is journaled, and with it every write before it)."""
    with sqlite3.connect(source) as db:
        db.executescript("".join(f"CREATE TABLE t{i} (id int);" for i in range(TABLES)))
    created = client.post(
        CONNECTIONS, json={"alias": "shop", "connection_uri": f"sqlite:///{source}"}
    )
    assert created.status_code == 201, created.text
    connection_id = created.json()["id"]
    refreshed = client.post(f"{DESCRIPTIONS}/refresh", json={"db_connection_id": connection_id})
    assert refreshed.status_code == 201, refreshed.text
    t0 = next(d for d in refreshed.json() if d["table_name"] == "t0")
    described = client.put(f"{DESCRIPTIONS}/{t0['id']}", json={"description": "kept"})
    assert described.status_code == 200, described.text
    return connection_id, described_rows(client, connection_id)


def described_rows(client: httpx.Client, connection_id: str) -> dict[str, str | None]:
    listed = client.get(DESCRIPTIONS, params={"db_connection_id": connection_id})
    assert listed.status_code == 200, listed.text
    return {d["table_name"]: d["description"] for d in listed.json()}


def kill_store_and_time_recovery(home: Path, api_url: str) -> float:
    """kill -9 the home's store; seconds until the API lists connections and is healthy again."""
    os.kill(store_pid(home), signal.SIGKILL)
    killed = time.monotonic()
    until(
        lambda: status(f"{api_url}/health") == 200 and status(f"{api_url}{CONNECTIONS}") == 200,
        "the API serves again",
        timeout_s=RECOVERY_LIMIT_S,
        poll_s=0.1,
    )
    return time.monotonic() - killed


SENSOR_DRY_RUN = """mutation($selector: SensorSelector!) {
  sensorDryRun(selectorData: $selector, cursor: null) {
    __typename
    ... on DryRunInstigationTick { evaluationResult { error { message } } }
    ... on PythonError { message }
  }
}"""


def sensor_error(ui_url: str) -> str | None:
    """What went wrong when the Dagster webserver's code server (a long-lived process with its
    own store client) evaluated the sensor that lists the connections; None if nothing did."""
    selector = {
        "repositoryLocationName": "tdsync.definitions",
        "repositoryName": "__repository__",
        "sensorName": "sync_connection_partitions",
    }
    response = httpx.post(
        f"{ui_url}/graphql",
        json={"query": SENSOR_DRY_RUN, "variables": {"selector": selector}},
        timeout=60,
    )
    tick = response.json()["data"]["sensorDryRun"]
    if tick["__typename"] != "DryRunInstigationTick":
        return tick.get("message") or tick["__typename"]
    error = tick["evaluationResult"]["error"]
    return error and error["message"]


def test_dev_serves_again_seconds_after_its_store_is_killed_and_leaves_no_store_behind(
    tmp_path: Path,
) -> None:
    env = embedded_env(tmp_path)
    home = Path(env["TDSYNC_HOME"])
    api_port, ui_port = free_port(), free_port()
    api_url, ui_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}"
    dev = subprocess.Popen(
        [TDSYNC, "dev", "--port", str(api_port), "--dagster-port", str(ui_port)],
        env=without_tdsync({**env, "COLUMNS": "200", "NO_COLOR": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        until(
            lambda: (
                dev.poll() is not None
                or (status(f"{api_url}/health") == 200 and status(f"{ui_url}/server_info") == 200)
            ),
            "tdsync dev serves",
            timeout_s=180,
            poll_s=0.25,
        )
        assert dev.poll() is None, dev.communicate()[0]
        with httpx.Client(base_url=api_url, timeout=60) as client:
            connection_id, before = catalogue(client, tmp_path / "shop.db")
            first = store_pid(home)
            assert sensor_error(ui_url) is None

            recovered_s = kill_store_and_time_recovery(home, api_url)
            api_back = time.monotonic()
            until(
                lambda: sensor_error(ui_url) is None,
                "the code server's sensor reads the store again",
                timeout_s=RECOVERY_LIMIT_S,
                poll_s=0.25,
            )
            sensor_s = time.monotonic() - api_back

            after = described_rows(client, connection_id)
            refreshed = client.post(
                f"{DESCRIPTIONS}/refresh", json={"db_connection_id": connection_id}
            )
        restarted = store_pid(home)
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
        output = dev.communicate(timeout=120)[0]
        left_behind = servers_on(home / "mongo" / "data")
        stop_embedded(home)  # should this test fail: no store of its own outlives it

    print(
        f"tdsync dev, store killed: API answered 200 after {recovered_s:.1f} s, "
        f"rows lost {len(before) - len(after)} of {len(before)}; "
        f"the code server's sensor read the store {sensor_s:.1f} s after that"
    )
    assert recovered_s < RECOVERY_LIMIT_S
    assert after == before  # nothing lost: every table, the description people wrote
    assert len(after) == TABLES and after["t0"] == "kept"
    assert refreshed.status_code == 201, refreshed.text
    assert restarted != first
    assert dev.returncode == 0, output
    assert "tdsync dev stopped." in output
    assert left_behind == []


def test_api_alone_serves_again_after_its_store_is_killed_and_the_cli_recovers_it_too(
    tmp_path: Path,
) -> None:
    env = embedded_env(tmp_path)
    home = Path(env["TDSYNC_HOME"])
    api = ApiProcess(env, tmp_path / "api.log")
    try:
        with api.client() as client:
            connection_id, before = catalogue(client, tmp_path / "shop.db")

            recovered_s = kill_store_and_time_recovery(home, api.url)
            after_api = described_rows(client, connection_id)

            # Killed again, the next CLI command brings it back (the API follows on its own).
            os.kill(store_pid(home), signal.SIGKILL)
            listed = subprocess.run(
                [TDSYNC, "connections", "list"],
                env=without_tdsync({**env, "COLUMNS": "200", "NO_COLOR": "1"}),
                capture_output=True,
                text=True,
                timeout=60,
            )
            until(lambda: status(f"{api.url}{CONNECTIONS}") == 200, "the API serves again")
            after_cli = described_rows(client, connection_id)
        assert api.proc.poll() is None
        # A store started by `tdsync api` is shared by the home: it outlives the API, as before.
        api.stop()
        assert servers_on(home / "mongo" / "data") == [store_pid(home)]
    finally:
        api.stop()
        stop_embedded(home)

    print(f"tdsync api, store killed: API answered 200 after {recovered_s:.1f} s")
    assert recovered_s < RECOVERY_LIMIT_S
    assert after_api == before and after_cli == before
    assert listed.returncode == 0, listed.stderr
    assert "shop" in listed.stdout
    assert "Traceback" not in api.log()
    assert servers_on(home / "mongo" / "data") == []
