"""Malformed connection URIs, unknown dialects and drivers, and URI options that would make a
source run statements or read the host's files: `invalid_database_connection` through the API
(POST and PUT) and the CLI, and nothing reaches the source."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tdsync.cli.main import main
from tdsync.store import CatalogueStore
from tdsync_tests.test_api.live import ApiProcess, unique

CONNECTIONS = "/api/v1/database-connections"
TDSYNC = str(Path(sys.executable).parent / "tdsync")

BAD_URIS = [
    "   ",
    "not a uri",
    "\x00postgresql://",
    "a" * 3999,
    "http://example.com/",
    "oracle://scott:tiger@127.0.0.1/orcl",
    "mssql+pyodbc://sa:pw@127.0.0.1/db",
    "nosuchdialect://u:p@127.0.0.1/db",
    "postgresql+nosuchdriver://u@127.0.0.1/db",
    "postgresql+asyncpg://u@127.0.0.1/db",
    "postgresql://u@127.0.0.1:notaport/db",
    "postgresql://u@[::1/db",
    "postgresql://u@127.0.0.1:99999/db",
    "postgresql://postgres@127.0.0.1:1/postgres",
    "postgresql://postgres@127.0.0.1/postgres?sslmode=bogus",
    "postgresql://postgres@127.0.0.1/postgres?application_name=%00",
    "postgresql://postgres@127.0.0.1/postgres\n; DROP TABLE canary",
    "mysql+pymysql://root@127.0.0.1:3306/test?charset=nosuch",
    "mysql://root@127.0.0.1:3306/test?local_infile=1",
    "mariadb://root@127.0.0.1:3306/test?read_default_file=/etc/passwd",
    "sqlite://",
    "sqlite:///:memory:",
    "sqlite:///no/such/dir/x.db",
    "sqlite:////etc/passwd",
    "duckdb:///:memory:",
    "duckdb:////etc/hostname",
]


def test_every_bad_uri_is_refused_with_invalid_database_connection_by_the_api(
    reliability_api: ApiProcess, reliability_store: CatalogueStore, tmp_path: Path
):
    good = tmp_path / "good.db"
    sa.create_engine(f"sqlite:///{good}").connect().close()
    with reliability_api.client() as client:
        existing = client.post(
            CONNECTIONS, json={"alias": unique("good"), "connection_uri": f"sqlite:///{good}"}
        ).json()["id"]
        answers = {}
        for uri in BAD_URIS:
            posted = client.post(CONNECTIONS, json={"alias": unique("bad"), "connection_uri": uri})
            put = client.put(f"{CONNECTIONS}/{existing}", json={"connection_uri": uri})
            answers[uri] = [(r.status_code, r.json()["error_code"]) for r in (posted, put)]
        after = client.get(f"{CONNECTIONS}/{existing}").json()

    expected = [(400, "invalid_database_connection")] * 2
    assert {uri: a for uri, a in answers.items() if a != expected} == {}
    assert after["connection_uri"] == f"sqlite:///{good}"  # no PUT changed it
    assert len(reliability_store.list_connections()) >= 1


@pytest.mark.parametrize("uri", BAD_URIS)
def test_every_bad_uri_is_refused_with_invalid_database_connection_by_the_cli(
    uri: str, tdsync_env: dict[str, str], capsys: pytest.CaptureFixture
):
    code = main(["connections", "add", unique("bad"), uri])

    err = capsys.readouterr().err
    assert code == 1
    assert "[invalid_database_connection]" in err and "Traceback" not in err


def test_the_console_script_refuses_an_unknown_dialect(tdsync_env: dict[str, str]):
    done = subprocess.run(
        [TDSYNC, "connections", "add", "legacy", "oracle://scott:tiger@127.0.0.1/orcl"],
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert "[invalid_database_connection] unsupported dialect 'oracle'" in done.stderr
    assert "tiger" not in done.stdout + done.stderr


def test_a_uri_option_that_runs_sql_on_connect_is_refused_and_runs_nothing(
    reliability_api: ApiProcess, canary_mysql: str
):
    injected = f"{canary_mysql}?init_command=DROP%20TABLE%20orders"

    with reliability_api.client() as client:
        answer = client.post(CONNECTIONS, json={"alias": unique("inj"), "connection_uri": injected})

    assert answer.status_code == 400
    assert answer.json()["detail"] == {"refused_options": ["init_command"]}
    engine = sa.create_engine(canary_mysql)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM orders")).scalar() == 2
    engine.dispose()
