"""The embedded default store (one SecantusDB process per TDSYNC_HOME) and open_store's key checks."""

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tdsync.catalogue import open_store
from tdsync.credentials import Cipher
from tdsync.embedded import embedded_uri, stop_embedded
from tdsync.errors import ConfigurationError
from tdsync.store import CatalogueStore

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT = (
    "import json, sys; from pathlib import Path; from tdsync.embedded import embedded_uri; "
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


def test_embedded_server_is_started_once_and_shared_by_other_processes(
    embedded_home: Path,
) -> None:
    store = open_store()
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
    again = open_store()
    assert again.get_connection("shop").id == conn.id
    assert again.get_connection("shop").connection_uri == "postgresql://u:*****@h/db"


def test_concurrent_starts_from_several_processes_make_one_server(embedded_home: Path) -> None:
    procs = [in_another_process(embedded_home) for _ in range(4)]
    reports = [report(p) for p in procs]
    assert len({(r["uri"], r["pid"]) for r in reports}) == 1
    assert servers_on(embedded_home / "mongo" / "data") == [reports[0]["pid"]]


# -- open_store's key checks ---------------------------------------------------------------------


def test_external_mongo_without_a_key_is_a_configuration_error(
    tdsync_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        monkeypatch.context() as env,
        pytest.raises(ConfigurationError, match="TDSYNC_ENCRYPTION_KEY must be set") as err,
    ):
        env.delenv("TDSYNC_ENCRYPTION_KEY")
        open_store()
    assert err.value.error_code == "configuration_error"


def test_wrong_key_is_a_clear_error_and_never_shows_plaintext(
    tdsync_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    right = open_store()
    conn = right.add_connection(
        alias="shop", connection_uri="postgresql://app:hunter2@db.internal/shop"
    )
    other_key = Fernet.generate_key().decode()
    with monkeypatch.context() as env:
        env.setenv("TDSYNC_ENCRYPTION_KEY", other_key)
        # Opening the store checks the key (issue 8): the error comes at start-up...
        with pytest.raises(ConfigurationError, match="not the key it was encrypted with") as err:
            open_store()
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
