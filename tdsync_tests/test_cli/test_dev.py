"""`tdsync dev`: the API, the Dagster webserver and daemon together; a UI run; Ctrl-C stops all.

One `tdsync dev` serves the whole module (starting it costs seconds); the last test stops it.
"""

import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tdsync.domain.models import utcnow
from tdsync.store import CatalogueStore
from tdsync.store.client import open_store
from tdsync_tests.conftest import TEST_KEY, until
from tdsync_tests.test_api.live import free_port, isolated_env, settings_for
from tdsync_tests.test_cli.conftest import TDSYNC

LOCATION = "tdsync.definitions"
READY_TIMEOUT_S = 120
# Small, so that the daemon's log (about 22 KB a minute) rotates while the module runs.
LOG_MAX_BYTES = 16384


@dataclass
class Dev:
    process: subprocess.Popen
    api: str
    ui: str
    env: dict[str, str]
    store: CatalogueStore
    home: Path


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def graphql(dev: Dev, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{dev.ui}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc; children re-parented later are not seen)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def dev(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    home = tmp_path_factory.mktemp("dev")
    env = {**os.environ, **isolated_env(mongo_uri, home, key=TEST_KEY, db_prefix="tdsync_dev")}
    env["TDSYNC_LOG_MAX_BYTES"] = str(LOG_MAX_BYTES)
    env.pop("TDSYNC_API_KEY", None)
    store = open_store(settings_for(env))
    api_port, ui_port = free_port(), free_port()
    process = subprocess.Popen(
        [TDSYNC, "dev", "--host", "127.0.0.1", "--port", str(api_port)]
        + ["--dagster-port", str(ui_port)],
        env={**env, "COLUMNS": "200", "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    dev = Dev(
        process, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}", env, store, home
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while get(f"{dev.api}/health")[0] != 200 or get(f"{dev.ui}/server_info")[0] != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"tdsync dev did not start:\n{process.communicate()[0]}")
        time.sleep(0.25)
    try:
        yield dev
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(60)
        store.client.drop_database(env["TDSYNC_MONGO_DB"])


def test_dev_serves_the_api_and_the_dagster_ui(dev: Dev):
    status, body = get(f"{dev.api}/health")
    ui_status, _ = get(dev.ui)

    assert status == 200
    assert json.loads(body) == {"status": "ok", "mongo": "ok"}
    assert ui_status == 200


def test_schedule_and_sensors_are_on_by_default(dev: Dev):
    repository = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
    data = graphql(
        dev,
        """query($repo: RepositorySelector!) {
          schedulesOrError(repositorySelector: $repo) {
            ... on Schedules { results { name scheduleState { status } } } }
          sensorsOrError(repositorySelector: $repo) {
            ... on Sensors { results { name sensorState { status } } } }
        }""",
        {"repo": repository},
    )

    schedules = {
        s["name"]: s["scheduleState"]["status"] for s in data["schedulesOrError"]["results"]
    }
    sensors = {s["name"]: s["sensorState"]["status"] for s in data["sensorsOrError"]["results"]}
    assert schedules == {
        "refresh_connections_on_schedule": "RUNNING",
        "scan_connections_on_schedule": "RUNNING",  # issue 17
    }
    assert sensors == {
        "settle_failed_runs": "RUNNING",
        "settle_cancelled_runs": "RUNNING",
        "sync_connection_partitions": "RUNNING",
        "check_table_descriptions": "RUNNING",
        "settle_orphaned_runs": "RUNNING",
        "scan_what_refreshes_found": "RUNNING",  # issue 17
    }


def test_daemon_reports_the_catalogue_checks(dev: Dev):
    import dagster as dg

    key = dg.AssetCheckKey(dg.AssetKey("table_descriptions"), "no_failed_descriptions")
    deadline = time.monotonic() + READY_TIMEOUT_S
    with dg.DagsterInstance.from_config(dev.env["DAGSTER_HOME"]) as instance:
        while not (history := instance.event_log_storage.get_asset_check_execution_history(key, 1)):
            assert time.monotonic() < deadline, "the check sensor never reported"
            time.sleep(0.5)

    evaluation = history[0].event.dagster_event.event_specific_data
    assert evaluation.passed
    assert evaluation.description == "no table description is FAILED"


LAUNCH = """mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

RUN = """query($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { status tags { key value } }
  }
  logsForRun(runId: $runId) {
    ... on EventConnection { events { ... on MessageEvent { message } } }
  }
}"""


STEP_FAILURES = """query($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events { ... on ExecutionStepFailureEvent { failureMetadata { description } } }
    }
  }
}"""

REEXECUTE = """mutation($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""

PARTITIONS = """query {
  assetNodeOrError(assetKey: {path: ["table_descriptions"]}) {
    ... on AssetNode { partitionKeys }
  }
}"""

RUNS_BY_TRIGGER = """query($connection: String!) {
  runsOrError(filter: {tags: [{key: "tdsync/db_connection_id", value: $connection}]}) {
    ... on Runs { results { runId tags { key value } } }
  }
}"""

REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
TABLE_DESCRIPTIONS = {"path": ["table_descriptions"]}


def launch(
    dev: Dev, selector: dict, tags: dict[str, str] | None = None, run_config: dict | None = None
) -> str:
    params = {
        "selector": {**REPOSITORY, **selector},
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
    }
    launched = graphql(dev, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def finished(dev: Dev, run_id: str) -> dict:
    """The run once it has ended (the daemon dequeues it and a run worker executes it)."""
    ended = {}

    def done() -> bool:
        ended.update(graphql(dev, RUN, {"runId": run_id}))
        return ended["runOrError"]["status"] in ("SUCCESS", "FAILURE", "CANCELED")

    until(done, f"run {run_id} finished", timeout_s=READY_TIMEOUT_S, poll_s=0.5)
    return ended


def partition_keys(dev: Dev) -> list[str]:
    return graphql(dev, PARTITIONS)["assetNodeOrError"]["partitionKeys"]


def shop_db(path: Path, *tables: str) -> str:
    with sqlite3.connect(path) as db:
        db.executescript("".join(f"CREATE TABLE {t} (id INTEGER);" for t in tables))
    return f"sqlite:///{path}"


def test_connection_partition_is_found_by_alias_and_materialized_from_the_ui_once_free(
    dev: Dev, tmp_path: Path
):
    conn = dev.store.add_connection(
        alias="ui-shop", connection_uri=shop_db(tmp_path / "ui-shop.db", "orders", "users")
    )
    until(lambda: "ui-shop" in partition_keys(dev), "the partition sensor added ui-shop", 120, 0.5)
    # Another process's run (a scan, say) has the connection: the UI run must wait for it.
    assert dev.store.acquire_connection_lease(
        conn.id, holder="other-process-run", kind="scan_table_descriptions", ttl_s=120, now=utcnow()
    )

    # What the asset's Materialize button launches for one selected partition: no config.
    run_id = launch(
        dev,
        {"jobName": "__ASSET_JOB", "assetSelection": [TABLE_DESCRIPTIONS]},
        {"dagster/partition": "ui-shop"},
    )

    def waiting() -> bool:
        events = graphql(dev, RUN, {"runId": run_id})["logsForRun"]["events"]
        return any("waiting for" in (e.get("message") or "") for e in events)

    until(waiting, "the UI run waits for the connection", READY_TIMEOUT_S, 0.5)
    assert dev.store.list_descriptions(conn.id) == []

    dev.store.release_connection_leases("other-process-run", succeeded=True, now=utcnow())
    run = finished(dev, run_id)

    tags = {t["key"]: t["value"] for t in run["runOrError"]["tags"]}
    assert run["runOrError"]["status"] == "SUCCESS", run
    assert tags["tdsync/db_connection_id"] == conn.id
    assert tags["dagster/partition"] == "ui-shop"
    assert [d.table_name for d in dev.store.list_descriptions(conn.id)] == ["orders", "users"]
    assert dev.store.connection_lease(conn.id)["last"]["holder"] == run_id


def test_run_started_over_http_is_reexecuted_from_the_ui(dev: Dev, tmp_path: Path):
    source = tmp_path / "http-shop.db"
    conn = dev.store.add_connection(alias="http-shop", connection_uri=shop_db(source, "orders"))
    request = urllib.request.Request(
        f"{dev.api}/api/v1/table-descriptions/refresh",
        data=json.dumps({"db_connection_id": conn.id}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201
    [parent] = graphql(dev, RUNS_BY_TRIGGER, {"connection": conn.id})["runsOrError"]["results"]
    assert {t["key"]: t["value"] for t in parent["tags"]}["tdsync/trigger"] == "webhook"
    shop_db(source, "invoices")

    reexecuted = graphql(
        dev, REEXECUTE, {"params": {"parentRunId": parent["runId"], "strategy": "ALL_STEPS"}}
    )["launchRunReexecution"]
    assert reexecuted["__typename"] == "LaunchRunSuccess", reexecuted
    run = finished(dev, reexecuted["run"]["runId"])

    assert run["runOrError"]["status"] == "SUCCESS", run
    assert [d.table_name for d in dev.store.list_descriptions(conn.id)] == ["invoices", "orders"]


@pytest.mark.parametrize("check", ["no_failed_descriptions", "no_scan_past_its_lease"])
def test_each_check_is_executed_on_its_own_from_the_ui(dev: Dev, tmp_path: Path, check: str):
    conn = dev.store.add_connection(
        alias=f"checked-{check}", connection_uri=shop_db(tmp_path / "c.db", "orders")
    )
    dev.store.descriptions.insert_one(
        {
            "db_connection_id": conn.id,
            "schema_name": "main",
            "table_name": "orders",
            "status": "FAILED",
            "error_message": "permission denied",
        }
    )

    run_id = launch(
        dev,
        {
            "jobName": "__ASSET_JOB",
            "assetSelection": [],
            "assetCheckSelection": [{"assetKey": TABLE_DESCRIPTIONS, "name": check}],
        },
    )
    run = finished(dev, run_id)

    assert run["runOrError"]["status"] == "SUCCESS", run
    evaluated = [
        e["message"]
        for e in run["logsForRun"]["events"]
        if "Asset check" in (e.get("message") or "")
    ]
    assert len(evaluated) == 1 and f"'{check}'" in evaluated[0], evaluated
    expected = "failed" if check == "no_failed_descriptions" else "passed"
    assert expected in evaluated[0]


def test_a_ui_run_confirming_an_emptied_schema_deprecates_its_tables(dev: Dev, tmp_path: Path):
    source = tmp_path / "emptied.db"
    conn = dev.store.add_connection(
        alias="emptied", connection_uri=shop_db(source, "orders", "users")
    )
    until(lambda: "emptied" in partition_keys(dev), "the partition sensor added emptied", 120, 0.5)
    selector = {"jobName": "__ASSET_JOB", "assetSelection": [TABLE_DESCRIPTIONS]}
    first = finished(dev, launch(dev, selector, {"dagster/partition": "emptied"}))
    with sqlite3.connect(source) as db:
        db.executescript("DROP TABLE orders; DROP TABLE users;")

    refused_id = launch(dev, selector, {"dagster/partition": "emptied"})
    refused = finished(dev, refused_id)
    confirmed = finished(
        dev,
        launch(
            dev,
            selector,
            {"dagster/partition": "emptied"},
            {
                "ops": {
                    "table_descriptions": {
                        "ops": {
                            "diff_against_catalogue": {"config": {"allow_empty_schemas": ["main"]}}
                        }
                    }
                }
            },
        ),
    )

    assert first["runOrError"]["status"] == "SUCCESS", first
    assert refused["runOrError"]["status"] == "FAILURE"
    [failure] = [
        e["failureMetadata"]
        for e in graphql(dev, STEP_FAILURES, {"runId": refused_id})["logsForRun"]["events"]
        if e.get("failureMetadata")
    ]
    assert "schema 'main' listed no tables or views" in failure["description"]
    assert "allow_empty_schemas: [main]" in failure["description"]
    assert confirmed["runOrError"]["status"] == "SUCCESS", confirmed
    assert {d.status.value for d in dev.store.list_descriptions(conn.id)} == {"DEPRECATED"}


def test_the_logs_dev_writes_rotate_at_their_size_bound(dev: Dev):
    logs = dev.home / "home" / "logs"

    until(
        lambda: (logs / "dagster-daemon.log.1").exists(),
        "the daemon's log rotated",
        READY_TIMEOUT_S,
        0.5,
    )

    names = sorted(p.name for p in logs.iterdir())
    assert {"api.log", "dagster-daemon.log", "dagster-webserver.log"} <= set(names)
    assert "dagster-daemon.log.4" not in names  # 3 older files kept
    assert all((logs / name).stat().st_size <= LOG_MAX_BYTES for name in names), names


def test_sigint_stops_every_process_dev_started(dev: Dev):
    started = descendants(dev.process.pid)
    assert len(started) >= 4, started  # webserver, daemon and their code servers

    dev.process.send_signal(signal.SIGINT)
    output, _ = dev.process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert dev.process.returncode == 0, output
    assert [pid for pid in started if alive(pid)] == []
    assert "tdsync dev stopped." in output
    # Not a terminal: every address on one line, whole, to copy from a log.
    assert f"  home         {dev.home / 'home'}\n" in output
    assert f"  API          {dev.api}  (OpenAPI docs at {dev.api}/docs)\n" in output
    assert f"  Dagster UI   {dev.ui}\n" in output
    assert f"(rotated at {LOG_MAX_BYTES // 1024} KiB)" in output
    assert get(f"{dev.api}/health")[0] == 0
    assert get(f"{dev.ui}/server_info")[0] == 0
