"""A recognisable password never leaves: not in a response, a log, a Dagster event or the store.

Real roles carry the password CANARY (a PostgreSQL role, a MariaDB user). The test drives
registration, refresh, scan and every error path (bad password, unreachable host, missing
database and schema, malformed URIs, unknown dialect, a table the role may not read, a view that
fails when read, a source that refuses the role, scans that fail whole) through a real
`tdsync api` process, the CLI and in-process runs, then searches everything they left: response
bodies and headers, the server's and the CLI's output, captured log records, every file under
TDSYNC_HOME and DAGSTER_HOME (compute logs, Dagster's SQLite storage, scan-run logs), every event
record of every run on the Dagster instance, serialized, and the raw MongoDB documents.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from tdsync.defs import runs
from tdsync.domain.errors import TdsyncError
from tdsync.domain.models import Status
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, until
from tdsync_tests.test_api.live import ApiProcess, settings_for, unique
from tdsync_tests.test_reliability.conftest import CANARY

CONNECTIONS = "/api/v1/database-connections"
DESCRIPTIONS = "/api/v1/table-descriptions"
SPELLINGS = sorted({CANARY, quote(CANARY, safe=""), quote_plus(CANARY), CANARY.encode().hex()})
TDSYNC = str(Path(sys.executable).parent / "tdsync")


class Recorder:
    """An API client that keeps every response, to search them all at the end."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.seen: list[str] = []

    def __call__(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)
        self.seen.append(
            f"{method} {path} {response.status_code} {response.headers} {response.text}"
        )
        return response


def leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode(errors="replace")
    return [s for s in SPELLINGS if s.encode() in data]


def scans_settled(call: Recorder, connection_id: str) -> bool:
    rows = call("GET", DESCRIPTIONS, params={"db_connection_id": connection_id}).json()
    return bool(rows) and all(r["status"] != Status.SYNCHRONIZING for r in rows)


@pytest.fixture
def pg_secrets_source(canary_pg: str) -> str:
    """The canary role's schema: a table, a table it may not read, a view that fails when read."""
    role = sa.make_url(canary_pg).username
    database = sa.make_url(canary_pg).database
    admin = sa.create_engine(
        sa.make_url(PG_ADMIN_URL).set(database=database), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE TABLE {role}.readable (id int PRIMARY KEY, kind text)"))
        conn.execute(sa.text(f"INSERT INTO {role}.readable VALUES (1, 'a'), (2, 'b')"))
        conn.execute(sa.text(f"ALTER TABLE {role}.readable OWNER TO {role}"))
        conn.execute(sa.text(f"CREATE TABLE {role}.forbidden (id int)"))  # owned by postgres
        conn.execute(
            sa.text(f"CREATE VIEW {role}.boom AS SELECT 1 / (id - id) AS x FROM {role}.readable")
        )
        conn.execute(sa.text(f"ALTER VIEW {role}.boom OWNER TO {role}"))
    admin.dispose()
    return canary_pg


def set_login(canary_pg: str, allowed: bool) -> None:
    role = sa.make_url(canary_pg).username
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"ALTER ROLE {role} {'LOGIN' if allowed else 'NOLOGIN'}"))
    admin.dispose()


def set_mysql_password(canary_mysql: str, password: str) -> None:
    url = sa.make_url(canary_mysql)
    admin = sa.create_engine(MYSQL_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for host in ("%", "localhost"):
            conn.execute(
                sa.text(f"ALTER USER '{url.username}'@'{host}' IDENTIFIED BY '{password}'")
            )
    admin.dispose()


def test_the_password_never_leaves_through_responses_logs_events_or_storage(
    reliability_api: ApiProcess,
    reliability_env: dict[str, str],
    reliability_store: CatalogueStore,
    pg_secrets_source: str,
    canary_mysql: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    caplog.set_level(logging.DEBUG)
    for key, value in reliability_env.items():
        monkeypatch.setenv(key, value)  # for the runs this process starts
    settings = settings_for(reliability_env)
    pg = pg_secrets_source
    role = sa.make_url(pg).username
    pg_url = sa.make_url(pg)
    mysql = canary_mysql
    outputs: list[str] = []

    with reliability_api.client() as client:
        call = Recorder(client)

        # -- the happy paths: register, list, refresh, scan ----------------------------------
        created = call(
            "POST",
            CONNECTIONS,
            json={"alias": unique("pg"), "connection_uri": pg, "schemas": [role]},
        )
        assert created.status_code == 201, created.text
        pg_id = created.json()["id"]
        assert created.json()["connection_uri"].startswith(f"postgresql+psycopg2://{role}:*****@")
        created = call("POST", CONNECTIONS, json={"alias": unique("my"), "connection_uri": mysql})
        assert created.status_code == 201, created.text
        my_id = created.json()["id"]
        assert call("GET", CONNECTIONS).status_code == 200
        assert call("GET", f"{CONNECTIONS}/{pg_id}").status_code == 200
        assert (
            call("POST", f"{DESCRIPTIONS}/refresh", json={"db_connection_id": pg_id}).status_code
            == 201
        )
        assert (
            call("POST", f"{DESCRIPTIONS}/refresh", json={"db_connection_id": my_id}).status_code
            == 201
        )
        assert (
            call(
                "POST", f"{DESCRIPTIONS}/sync-schemas", json={"db_connection_id": pg_id}
            ).status_code
            == 201
        )
        until(lambda: scans_settled(call, pg_id), "the PostgreSQL scan settled")
        rows = {
            r["table_name"]: r
            for r in call("GET", DESCRIPTIONS, params={"db_connection_id": pg_id}).json()
        }
        # Statement failures fail their own table, with the driver's words and no password.
        assert rows["readable"]["status"] == Status.SCANNED, rows["readable"]["error_message"]
        assert rows["forbidden"]["status"] == Status.FAILED
        assert "permission denied" in rows["forbidden"]["error_message"]
        assert rows["boom"]["status"] == Status.FAILED
        assert "division by zero" in rows["boom"]["error_message"]

        # -- registration errors ---------------------------------------------------------------
        bad = {
            "wrong password": sa.make_url(mysql).set(password=CANARY + "-wrong"),
            "unreachable host": pg_url.set(port=1),
            "missing database": pg_url.set(database="no_such_database_x"),
        }
        malformed = [
            f"postgresql://{role}:{CANARY}@127.0.0.1:notaport/db",
            f"oracle://{role}:{CANARY}@127.0.0.1/db",
            f"postgresql://{role}:{CANARY}@[::1/db",
            f"postgresql://{role}@127.0.0.1:1/db?password={CANARY}",
            f"{CANARY}",
            f"mysql+nosuchdriver://{role}:{CANARY}@127.0.0.1/db",
        ]
        uris = [u.render_as_string(hide_password=False) for u in bad.values()] + malformed
        for uri in uris:
            answer = call("POST", CONNECTIONS, json={"alias": unique("bad"), "connection_uri": uri})
            assert answer.status_code in (400, 422), answer.text
            answer = call("PUT", f"{CONNECTIONS}/{pg_id}", json={"connection_uri": uri})
            assert answer.status_code in (400, 422), answer.text
        missing_schema = call(
            "POST",
            CONNECTIONS,
            json={"alias": unique("bad"), "connection_uri": pg, "schemas": ["nope"]},
        )
        assert missing_schema.json()["error_code"] == "invalid_database_connection"

        # -- sources that turn against tdsync after registration -------------------------------
        set_login(pg, False)
        set_mysql_password(mysql, CANARY + "-changed")
        try:
            for connection_id in (pg_id, my_id):
                answer = call(
                    "POST", f"{DESCRIPTIONS}/refresh", json={"db_connection_id": connection_id}
                )
                assert answer.json()["error_code"] == "invalid_database_connection", answer.text
                answer = call(
                    "POST", f"{DESCRIPTIONS}/sync-schemas", json={"db_connection_id": connection_id}
                )
                assert answer.status_code == 201, answer.text
                until(
                    lambda cid=connection_id: scans_settled(call, cid), "the failing scan settled"
                )
            failed = call("GET", DESCRIPTIONS, params={"db_connection_id": my_id}).json()
            assert {r["status"] for r in failed} == {Status.FAILED}

            # The CLI and in-process runs, on the same broken connections.
            for args in (
                ["connections", "add", unique("cli"), uris[0]],
                ["connections", "add", unique("cli"), malformed[0]],
                ["refresh", pg_id],
                ["scan", my_id],
                ["connections", "list"],
            ):
                done = subprocess.run(
                    [TDSYNC, *args],
                    env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                outputs += [done.stdout, done.stderr]
            for action in (
                lambda: runs.refresh(my_id, trigger="cli", settings=settings),
                lambda: runs.scan(pg_id, trigger="cli", settings=settings),
            ):
                with pytest.raises(TdsyncError) as raised:
                    action()
                outputs.append(f"{raised.value.message} {raised.value.detail}")
        finally:
            set_login(pg, True)
            set_mysql_password(mysql, CANARY)

    # -- the search -------------------------------------------------------------------------------
    found: dict[str, list[str]] = {}
    for i, text in enumerate(call.seen):
        if leaks(text):
            found[f"response {i}: {text[:200]}"] = leaks(text)
    for name, text in [("server log", reliability_api.log()), ("caplog", caplog.text)] + [
        (f"cli output {i}", out) for i, out in enumerate(outputs)
    ]:
        if leaks(text):
            found[name] = leaks(text)
    searched = 0
    for root in (reliability_env["TDSYNC_HOME"], reliability_env["DAGSTER_HOME"]):
        for path in Path(root).rglob("*"):
            if path.is_file():
                searched += 1
                if leaks(path.read_bytes()):
                    found[str(path)] = leaks(path.read_bytes())
    instance = dg.DagsterInstance.from_config(reliability_env["DAGSTER_HOME"])
    try:
        recorded = instance.get_runs()
        events = 0
        for run in recorded:
            if leaks(dg.serialize_value(run)):
                found[f"run {run.run_id}"] = leaks(dg.serialize_value(run))
            for record in instance.all_logs(run.run_id):
                events += 1
                if leaks(dg.serialize_value(record)):
                    found[f"event of run {run.run_id}"] = leaks(dg.serialize_value(record))
    finally:
        instance.dispose()
    db = reliability_store.db
    for name in db.list_collection_names():
        for doc in db[name].find():
            if leaks(repr(doc)):
                found[f"mongo {name}"] = leaks(repr(doc))

    print(
        f"secrets: {len(call.seen)} responses, {len(outputs)} CLI/run outputs, {searched} files, "
        f"{events} events of {len(recorded)} runs, {len(db.list_collection_names())} collections"
    )
    assert found == {}
    # The search saw what it should have: webhook and CLI runs of both jobs, failed and not.
    jobs = {(r.job_name, r.status) for r in recorded}
    assert ("refresh_table_descriptions", dg.DagsterRunStatus.FAILURE) in jobs
    assert ("scan_table_descriptions", dg.DagsterRunStatus.FAILURE) in jobs
    assert ("scan_table_descriptions", dg.DagsterRunStatus.SUCCESS) in jobs
    assert events > 50 and searched > 5 and len(call.seen) > 20
    assert any("invalid_database_connection" in out for out in outputs)
