"""The embedded default store (one SecantusDB process per TDSYNC_HOME: shared, restarted after a
crash, private files) and open_store's key checks."""

import fcntl
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tdsync.config.credentials import Cipher
from tdsync.config.settings import Settings
from tdsync.domain.errors import ConfigurationError, TdsyncError
from tdsync.store import CatalogueStore
from tdsync.store.client import open_store, shared_store
from tdsync.store.embedded import embedded_uri, restart_embedded, stop_embedded
from tdsync_tests.conftest import until

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT = (
    "import json, sys; from pathlib import Path; from tdsync.store.embedded import embedded_uri; "
    "home = Path(sys.argv[1]); uri = embedded_uri(home); "
    "print(json.dumps({'uri': uri, 'pid': json.loads((home / 'mongo' / 'server.json').read_text())['pid']}))"
)


def servers_on(folder: Path) -> list[int]:
    """Pids of every process whose command line names this data folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"secantus" in b" ".join(cmdline) and str(folder).encode() in cmdline:
            found.append(int(entry.name))
    return found


def in_another_process(home: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TDSYNC_")}
    return subprocess.Popen(
        [sys.executable, "-c", REPORT, str(home)],
        cwd=REPO_ROOT,
        env={**env, "TDSYNC_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def report(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def embedded_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """TDSYNC_MONGO_URI and the key unset: tdsync runs its own server under this home."""
    home = tmp_path / "home"
    monkeypatch.setenv("TDSYNC_HOME", str(home))
    monkeypatch.setenv("TDSYNC_MONGO_DB", "tdsync")
    for name in ("TDSYNC_MONGO_URI", "TDSYNC_ENCRYPTION_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield home
    stop_embedded(home)
    assert servers_on(home / "mongo" / "data") == []


@pytest.fixture
def embedded_settings(embedded_home: Path) -> Settings:
    """The settings embedded_home stands for: the embedded store under it, no URI, no key."""
    return Settings(home=embedded_home, mongo_db="tdsync", mongo_uri=None, encryption_key=None)


def test_embedded_server_is_started_once_and_shared_by_other_processes(
    embedded_home: Path,
    embedded_settings: Settings,
) -> None:
    store = open_store(embedded_settings)
    state = json.loads((embedded_home / "mongo" / "server.json").read_text())
    assert servers_on(embedded_home / "mongo" / "data") == [state["pid"]]
    key_file = embedded_home / "encryption.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    conn = store.add_connection(alias="shop", connection_uri="postgresql://u:pw@h/db")

    other = report(in_another_process(embedded_home))
    assert other == {"uri": embedded_uri(embedded_home), "pid": state["pid"]}
    assert servers_on(embedded_home / "mongo" / "data") == [state["pid"]]

    # Stopped and started again, the same folder still holds the catalogue.
    assert stop_embedded(embedded_home)
    assert servers_on(embedded_home / "mongo" / "data") == []
    again = open_store(embedded_settings)
    assert again.get_connection("shop").id == conn.id
    assert again.get_connection("shop").connection_uri == "postgresql://u:*****@h/db"


def test_concurrent_starts_from_several_processes_make_one_server(embedded_home: Path) -> None:
    procs = [in_another_process(embedded_home) for _ in range(4)]
    reports = [report(p) for p in procs]
    assert len({(r["uri"], r["pid"]) for r in reports}) == 1
    assert servers_on(embedded_home / "mongo" / "data") == [reports[0]["pid"]]


# -- open_store's key checks ---------------------------------------------------------------------


def test_external_mongo_without_a_key_is_a_configuration_error(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="TDSYNC_ENCRYPTION_KEY must be set") as err:
        open_store(settings.model_copy(update={"encryption_key": None}))
    assert err.value.error_code == "configuration_error"


def test_wrong_key_is_a_clear_error_and_never_shows_plaintext(settings: Settings) -> None:
    right = open_store(settings)
    conn = right.add_connection(
        alias="shop", connection_uri="postgresql://app:hunter2@db.internal/shop"
    )
    other_key = Fernet.generate_key().decode()
    # Opening the store checks the key (issue 8): the error comes at start-up...
    with pytest.raises(ConfigurationError, match="not the key it was encrypted with") as err:
        open_store(settings.model_copy(update={"encryption_key": other_key}))
    assert "hunter2" not in str(err.value.as_dict())
    # ...and every read of a URI still says so, should a store be opened without the check.
    wrong = CatalogueStore(right.client, right.db.name, Cipher(other_key))
    for call in (
        lambda: wrong.get_connection(conn.id),
        wrong.list_connections,
        lambda: wrong.connection_uri(conn.id),
    ):
        with pytest.raises(ConfigurationError, match="not the key it was encrypted with") as err:
            call()
        assert "hunter2" not in str(err.value.as_dict())
        assert "db.internal" not in str(err.value.as_dict())


# -- a crashed server comes back; the store's files are private ------------------------------------


def server_state(home: Path) -> dict:
    return json.loads((home / "mongo" / "server.json").read_text())


def pings(store: CatalogueStore) -> bool:
    try:
        store.ping()
    except TdsyncError:
        return False
    return True


def test_killed_server_is_restarted_on_its_port_and_the_store_reconnects(
    embedded_home: Path,
    embedded_settings: Settings,
) -> None:
    store = shared_store(embedded_settings)
    conn = store.add_connection(alias="shop", connection_uri="sqlite:////tmp/shop.db")
    before = server_state(embedded_home)

    os.kill(before["pid"], signal.SIGKILL)
    started = time.monotonic()
    until(lambda: pings(store), "the store answers again", timeout_s=15)
    print(
        f"embedded server killed: the store answered again after {time.monotonic() - started:.1f} s"
    )

    after = server_state(embedded_home)
    assert after["pid"] != before["pid"]
    assert after["port"] == before["port"]
    assert servers_on(embedded_home / "mongo" / "data") == [after["pid"]]
    assert store.get_connection("shop").id == conn.id


def bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def test_server_whose_port_was_taken_moves_and_the_store_follows_it(
    embedded_home: Path,
    embedded_settings: Settings,
) -> None:
    store = shared_store(embedded_settings)
    store.add_connection(alias="shop", connection_uri="sqlite:////tmp/shop.db")
    before = server_state(embedded_home)
    squatter = socket.socket()
    # Holding the home's start lock keeps this process's restart waiting until the port is taken.
    with open(embedded_home / "mongo" / "start.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.kill(before["pid"], signal.SIGKILL)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # despite TIME_WAIT
        until(lambda: bound(squatter, before["port"]), "the dead server's port is taken")
        squatter.listen()
    with squatter:
        until(lambda: pings(store), "the store answers again", timeout_s=15)

        after = server_state(embedded_home)
        assert after["port"] != before["port"]
        assert store.client.address == ("127.0.0.1", after["port"])
        assert store.get_connection("shop").alias == "shop"


def test_server_stopped_on_purpose_is_not_restarted_by_its_clients(
    embedded_home: Path, embedded_settings: Settings
) -> None:
    open_store(embedded_settings)
    port = server_state(embedded_home)["port"]

    assert stop_embedded(embedded_home)

    assert restart_embedded(embedded_home) is None  # what a client does after a failed heartbeat
    assert servers_on(embedded_home / "mongo" / "data") == []
    # The next process that opens the store starts it again, where it was.
    open_store(embedded_settings)
    assert server_state(embedded_home)["port"] == port


def test_store_folder_and_files_are_private_to_their_user(
    embedded_home: Path, embedded_settings: Settings
) -> None:
    store = open_store(embedded_settings)
    conn = store.add_connection(alias="shop", connection_uri="sqlite:////tmp/shop.db")
    store.descriptions.insert_many(
        [
            {"db_connection_id": conn.id, "schema_name": "main", "table_name": f"t{i}"}
            for i in range(50)
        ]
    )
    store.client.admin.command("fsync")

    modes = {
        str(path.relative_to(embedded_home)): stat.S_IMODE(path.stat().st_mode)
        for path in embedded_home.rglob("*")
    }
    assert stat.S_IMODE(embedded_home.stat().st_mode) == 0o700
    assert {"encryption.key", "mongo/server.json", "mongo/server.log", "mongo/start.lock"} <= set(
        modes
    )
    assert any(name.startswith("mongo/data/") for name in modes)
    folders = {name for name in modes if (embedded_home / name).is_dir()}
    assert {name: mode for name, mode in modes.items() if name in folders and mode != 0o700} == {}
    assert {
        name: mode for name, mode in modes.items() if name not in folders and mode != 0o600
    } == {}
