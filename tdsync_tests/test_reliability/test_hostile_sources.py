"""Sources are opened read-only with safe options only.

URIs whose options name a file, a socket, a service file or SQL of tdsync's host, or whose file
is tdsync's own state, are refused with `invalid_database_connection` naming the option, at
registration (API POST and PUT, `tdsync connections add`) and again whenever an engine is made
(a connection stored before the rules existed). Every dialect's session is read-only; a DuckDB
file cannot read other files of the host; a stranger's banner never reaches an error message;
credential columns of system catalogs are masked in examples.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from tdsync.cli.main import main
from tdsync.config.settings import Settings
from tdsync.domain.errors import InvalidDatabaseConnection
from tdsync.domain.models import Status, TableType
from tdsync.domain.scan_model import ScanOptions, ScanTarget
from tdsync.sources.engine import source_engine
from tdsync.sources.scanner import scan_tables
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import MYSQL_ADMIN_URL, execute
from tdsync_tests.test_api.live import ApiProcess, unique
from tdsync_tests.test_reliability.conftest import CANARY

CONNECTIONS = "/api/v1/database-connections"
PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MY = "mysql+pymysql://root@127.0.0.1:3306/test"
HOST_FILE_SECRET = "host-file-CANARY-91c2"

# (URI template, the option the refusal names). {db}: an existing DuckDB or SQLite file,
# {pwned}: a file the DuckDB injection would write.
HOSTILE_URIS = [
    (f"{PG}?passfile=/root/.pgpass", "passfile"),
    (f"{PG}?sslkey=/etc/ssl/private/server.key", "sslkey"),
    (f"{PG}?sslcert=/etc/passwd", "sslcert"),
    (f"{PG}?sslrootcert=/etc/passwd", "sslrootcert"),
    (f"{PG}?sslcrl=/etc/passwd", "sslcrl"),
    (f"{PG}?sslpassword=x", "sslpassword"),
    (f"{PG}?service=prod", "service"),
    (f"{PG}?servicefile=/etc/pg_service.conf", "servicefile"),
    (f"{PG}?host=/var/run/postgresql", "host"),
    (f"{PG}?host=127.0.0.1,/tmp", "host"),
    ("postgresql://postgres@/postgres", "host"),
    ("postgresql:///postgres", "host"),  # no host: the local Unix socket
    (f"{PG}?options=-c%20default_transaction_read_only%3Doff", "options"),
    (f"{PG}?options=-c%20session_preload_libraries%3Devil", "options"),
    (f"{PG}?options=-c%20search_path%3Da%5C%20-c%5C%20log_statement%3Dall", "options"),
    (f"{PG}?options=-Ddatadir", "options"),
    (f"{MY}?unix_socket=/run/mysqld/mysqld.sock", "unix_socket"),
    (f"{MY}?init_command=DROP%20TABLE%20x", "init_command"),
    (f"{MY}?local_infile=1", "local_infile"),
    (f"{MY}?read_default_file=/etc/mysql/my.cnf", "read_default_file"),
    (f"{MY}?client_flag=128", "client_flag"),
    (f"{MY}?ssl_ca=/etc/passwd", "ssl_ca"),
    (f"{MY}?ssl_key=/etc/ssl/private/server.key", "ssl_key"),
    ("mariadb://root@127.0.0.1:3306/test?autocommit=1", "autocommit"),
    (
        "duckdb:///{db}?threads%20TO%202%3B%20COPY%20(SELECT%2042)%20TO%20%27{pwned}%27"
        "%3B%20SET%20threads=1",
        "threads TO 2; COPY (SELECT 42) TO '{pwned}'; SET threads",
    ),
    ("duckdb:///{db}?enable_external_access=true", "enable_external_access"),
    ("duckdb:///{db}?access_mode=READ_WRITE", "access_mode"),
    ("sqlite:///{db}?mode=rwc&uri=true", "mode"),
    ("sqlite:///{db}?vfs=unix-none", "vfs"),
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    db = tmp_path / "plain.db"
    sqlite3.connect(db).close()
    duck = tmp_path / "plain.duckdb"
    duckdb.connect(str(duck)).close()
    return {"sqlite": str(db), "duckdb": str(duck), "pwned": str(tmp_path / "pwned.csv")}


def hostile(files: dict[str, str]) -> list[tuple[str, str]]:
    def fill(text: str, uri: str) -> str:
        db = files["duckdb" if uri.startswith("duckdb") else "sqlite"]
        return text.replace("{db}", db).replace("{pwned}", files["pwned"])

    return [(fill(uri, uri), fill(option, uri)) for uri, option in HOSTILE_URIS]


def test_every_hostile_uri_is_refused_naming_its_option_by_post_and_put(
    reliability_api: ApiProcess, files: dict[str, str]
):
    uris = hostile(files)
    with reliability_api.client() as client:
        existing = client.post(
            CONNECTIONS,
            json={"alias": unique("ok"), "connection_uri": f"sqlite:///{files['sqlite']}"},
        ).json()["id"]
        answers = {}
        for uri, option in uris:
            posted = client.post(CONNECTIONS, json={"alias": unique("bad"), "connection_uri": uri})
            put = client.put(f"{CONNECTIONS}/{existing}", json={"connection_uri": uri})
            got = [(r.status_code, r.json()["error_code"]) for r in (posted, put)]
            named = [option in r.json()["detail"]["refused_options"] for r in (posted, put)]
            if got != [(400, "invalid_database_connection")] * 2 or not all(named):
                answers[uri] = [r.json() for r in (posted, put)]
        after = client.get(f"{CONNECTIONS}/{existing}").json()

    assert answers == {}
    assert after["connection_uri"] == f"sqlite:///{files['sqlite']}"
    assert not Path(files["pwned"]).exists()  # the DuckDB injection ran nothing
    assert len(uris) == 29  # the figure README's "Reliability" quotes


def test_every_hostile_uri_is_refused_naming_its_option_by_the_cli(
    tdsync_env: dict[str, str], files: dict[str, str], capsys: pytest.CaptureFixture
):
    for uri, option in hostile(files):
        code = main(["connections", "add", unique("bad"), uri])
        err = capsys.readouterr().err
        assert code == 1, uri
        assert "[invalid_database_connection] connection option(s) not allowed" in err, err
        assert " ".join(option.split()) in " ".join(err.split())
    assert not Path(files["pwned"]).exists()


def test_a_connection_stored_before_the_allow_list_is_refused_when_refreshed_or_scanned(
    tdsync_env: dict[str, str], store: CatalogueStore, files: dict[str, str], capsys
):
    # As if registered by an older tdsync: the DuckDB injection, encrypted in the store.
    uri, option = next((u, o) for u, o in hostile(files) if "COPY" in u)
    conn = store.add_connection(alias="old", connection_uri=f"duckdb:///{files['duckdb']}")
    store.connections.update_one(
        {"alias": "old"}, {"$set": {"connection_uri": store.cipher.encrypt(uri)}}
    )

    refreshed = main(["refresh", "old"])
    refresh_err = capsys.readouterr().err
    scanned = main(["scan", "old"])
    scan_err = capsys.readouterr().err

    assert (refreshed, scanned) == (1, 1)
    for err in (refresh_err, scan_err):
        assert "invalid_database_connection" in err and "not allowed" in err, err
    assert not Path(files["pwned"]).exists()
    assert store.list_descriptions(conn.id) == []


def test_a_database_file_of_tdsyncs_own_state_is_refused_even_through_a_symlink(
    tdsync_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
):
    dagster_home = Path(tdsync_env["DAGSTER_HOME"])
    store_folder = Path(tdsync_env["TDSYNC_HOME"]) / "mongo"
    runs = dagster_home / "history" / "runs.db"
    runs.parent.mkdir(parents=True, exist_ok=True)
    store_folder.mkdir(parents=True, exist_ok=True)
    for path in (runs, store_folder / "catalogue.db"):
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS secrets (value TEXT)")
    link = tmp_path / "innocent.db"
    link.symlink_to(runs)

    for path in (runs, store_folder / "catalogue.db", link):
        for scheme in ("sqlite", "duckdb"):
            code = main(["connections", "add", unique("state"), f"{scheme}:///{path}"])
            err = capsys.readouterr().err
            assert code == 1
            assert "inside tdsync's own state" in err, err


# -- every dialect's session is read-only ------------------------------------------------------


@pytest.fixture(params=["sqlite", "duckdb", "postgresql", "mariadb"])
def writable_source(request, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A source with one row in `probe`, and the URI tdsync would be given for it."""
    table = f"probe_{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'w.db'}"
    elif request.param == "duckdb":
        uri = f"duckdb:///{tmp_path / 'w.duckdb'}"
    else:
        uri = request.getfixturevalue("pg_url" if request.param == "postgresql" else "mysql_url")
    execute(uri, f"CREATE TABLE {table} (id int)", f"INSERT INTO {table} VALUES (1)")
    yield uri, table
    execute(uri, f"DROP TABLE IF EXISTS {table}", f"DROP TABLE IF EXISTS {table}_new")


@pytest.mark.parametrize(
    "write",
    [
        "CREATE TABLE {t}_new (id int)",
        "INSERT INTO {t} VALUES (2)",
        "UPDATE {t} SET id = 3",
        "DELETE FROM {t}",
        "DROP TABLE {t}",
    ],
)
def test_a_write_through_tdsyncs_engine_fails_on_every_dialect(
    writable_source: tuple[str, str], write: str, source_settings: Settings
):
    uri, table = writable_source
    with (
        pytest.raises(InvalidDatabaseConnection) as err,
        source_engine(uri, timeout_s=5, settings=source_settings) as engine,
        engine.begin() as conn,
    ):
        conn.execute(sa.text(write.format(t=table)))

    assert re.search(r"read.?only", err.value.detail["reason"], re.IGNORECASE), err.value.detail
    check = sa.create_engine(uri)
    with check.connect() as conn:
        assert conn.execute(sa.text(f"SELECT id FROM {table}")).scalars().all() == [1]
        assert not sa.inspect(conn).has_table(f"{table}_new")
    check.dispose()


# -- DuckDB cannot read the host's files -------------------------------------------------------


def test_a_duckdb_view_over_a_host_file_fails_and_never_puts_the_file_in_examples(
    tdsync_env: dict[str, str], store: CatalogueStore, tmp_path: Path
):
    secret_text, secret_csv = tmp_path / "host.txt", tmp_path / "host.csv"
    secret_text.write_text(HOST_FILE_SECRET)
    secret_csv.write_text(f"key\n{HOST_FILE_SECRET}\n")
    path = tmp_path / "leaky.duckdb"
    with duckdb.connect(str(path)) as db:
        db.execute("CREATE TABLE plain (id INTEGER)")
        db.execute("INSERT INTO plain VALUES (1)")
        db.execute(f"CREATE VIEW leak_text AS SELECT * FROM read_text('{secret_text}')")
        db.execute(f"CREATE VIEW leak_csv AS SELECT * FROM read_csv('{secret_csv}')")

    assert main(["connections", "add", "leaky", f"duckdb:///{path}"]) == 0
    main(["scan", "leaky"])

    rows = {d.table_name: d for d in store.list_descriptions(store.get_connection("leaky").id)}
    assert rows["plain"].status == Status.SCANNED
    assert rows["plain"].examples == [{"id": 1}]
    for view in ("leak_text", "leak_csv"):
        assert rows[view].status == Status.FAILED
        assert "disabled by configuration" in rows[view].error_message
    raw = json.dumps(list(store.descriptions.find({})), default=str)
    assert HOST_FILE_SECRET not in raw


# -- a stranger's banner never reaches an error message -----------------------------------------


@pytest.fixture
def banner_port() -> Iterator[callable]:
    """Start a TCP server that greets with `banner` and hangs up; returns its port."""
    sockets: list[socket.socket] = []

    def serve(banner: bytes) -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sockets.append(sock)

        def answer() -> None:
            while True:
                try:
                    client, _ = sock.accept()
                except OSError:
                    return
                with client:
                    client.sendall(banner)
                    with contextlib.suppress(OSError):
                        client.recv(4096)

        threading.Thread(target=answer, daemon=True).start()
        return sock.getsockname()[1]

    yield serve
    for sock in sockets:
        sock.close()


# A MySQL-shaped greeting whose server version is the banner: PyMySQL would quote it.
MYSQL_SHAPED = b"\x30\x00\x00\x00\x0aSSH-2.0-secret-banner\x00\x01\x00\x00\x00abcdefgh\x00" + bytes(
    20
)


@pytest.mark.parametrize(
    ("template", "banner", "dialect"),
    [
        # sslmode=disable: with SSL allowed, libpq takes the banner's first byte `S` for "SSL
        # accepted" and fails the handshake in whichever way the rest of the bytes' timing gives
        # (see the test below); without it, the answer is always a protocol mismatch.
        (
            "postgresql://u:pw@127.0.0.1:{port}/db?sslmode=disable",
            b"SSH-2.0-secret-banner\r\n",
            "PostgreSQL",
        ),
        (
            "postgresql://u:pw@127.0.0.1:{port}/db?sslmode=disable",
            b"HTTP/1.1 400 secret-banner\r\n",
            "PostgreSQL",
        ),
        ("mysql+pymysql://u:pw@127.0.0.1:{port}/db", b"SSH-2.0-secret-banner\r\n", "MySQL"),
        ("mysql+pymysql://u:pw@127.0.0.1:{port}/db", MYSQL_SHAPED, "MySQL"),
    ],
    ids=["pg-ssh", "pg-http", "mysql-ssh", "mysql-shaped"],
)
def test_a_server_that_is_not_the_database_is_named_in_tdsyncs_words(
    tdsync_env, banner_port, capsys, template: str, banner: bytes, dialect: str
):
    port = banner_port(banner)

    code = main(["connections", "add", unique("banner"), template.format(port=port)])

    err = capsys.readouterr().err
    assert code == 1
    assert f"the server at 127.0.0.1:{port} did not answer as {dialect}" in err, err
    assert "secret-banner" not in err and "SSH" not in err and "received" not in err


# -- credential columns of system catalogs are masked -------------------------------------------


def test_mariadb_user_passwords_are_masked_in_examples_of_the_mysql_schema(
    canary_mysql: str, source_settings: Settings
):
    # MariaDB's own password hash of the canary user, as mysql.user shows it.
    digest = hashlib.sha1(hashlib.sha1(CANARY.encode()).digest()).hexdigest().upper()
    admin = sa.make_url(MYSQL_ADMIN_URL).set(database="mysql").render_as_string(False)
    targets = [
        ScanTarget(f"mysql.{t}", "c", "mysql", t, kind)
        for t, kind in (("user", TableType.VIEW), ("global_priv", TableType.TABLE))
    ]

    every_row = ScanOptions(example_rows=1000)
    results = {
        r.target.table_name: r
        for r in scan_tables(admin, targets, options=every_row, settings=source_settings)
    }

    assert all(r.ok for r in results.values()), results
    user, priv = results["user"].examples, results["global_priv"].examples
    assert user and priv
    assert {row["authentication_string"] for row in user} <= {"*****"}
    assert {row["Password"] for row in user} <= {"*****"}
    assert {row["Priv"] for row in priv} == {"*****"}
    assert f"*{digest}" not in json.dumps([r.examples for r in results.values()])


def test_a_banner_taken_for_an_ssl_answer_never_reaches_the_error(tdsync_env, banner_port, capsys):
    port = banner_port(b"SSH-2.0-secret-banner\r\n")

    code = main(["connections", "add", unique("banner"), f"postgresql://u:pw@127.0.0.1:{port}/db"])

    err = capsys.readouterr().err
    assert code == 1
    assert "invalid_database_connection" in err
    assert "secret-banner" not in err and "SSH-2.0" not in err
