"""SSH tunnels (issue 14): a real OpenSSH server, started by the test on a free port with its own
host key and config, in front of the local PostgreSQL."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tdsync.store import CatalogueStore
from tdsync_tests.conftest import execute, unavailable, until
from tdsync_tests.test_api.live import free_port, unique

SSHD = Path("/usr/sbin/sshd")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if not SSHD.exists() or not shutil.which("ssh-keygen"):
        unavailable("openssh-server is not installed (.ci/run installs it)")
    root = tmp_path_factory.mktemp("sshd")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", root / "host"], check=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-f", root / "client"], check=True
    )
    (root / "authorized").write_text((root / "client.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\nUsePAM no\n"
        f"PermitRootLogin prohibit-password\nAuthorizedKeysFile {root / 'authorized'}\n"
        f"StrictModes no\nAllowTcpForwarding yes\nPidFile {root / 'sshd.pid'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(root / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "sshd.log", "wb"),  # noqa: SIM115
    )

    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return proc.poll() is not None  # exited: the assertion below says why

    until(listening, "sshd listens")
    assert proc.poll() is None, (root / "sshd.log").read_text()
    yield {
        "host": "127.0.0.1",
        "port": port,
        "username": "root",
        "private_key": (root / "client").read_text(),
        "private_key_password": "passphrase",
    }
    proc.terminate()
    proc.wait(timeout=10)


def test_a_connection_through_ssh_is_registered_refreshed_and_scanned(
    api: httpx.Client, api_store: CatalogueStore, pg_url: str, sshd: dict
):
    table = unique("over_ssh")
    execute(pg_url, f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    created = api.post(
        "/api/database-connections",
        json={
            "alias": unique("ssh"),
            "connection_uri": pg_url,
            "use_ssh": True,
            "ssh_settings": sshd,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["ssh_settings"]["private_key"] == "*****"
    assert body["ssh_settings"]["private_key_password"] == "*****"
    doc = api_store.connections.find_one({"alias": body["alias"]})
    assert "passphrase" not in str(doc) and "PRIVATE KEY" not in str(doc)

    rows = api.get(
        "/api/v1/table-descriptions", params={"db_connection_id": body["id"], "table_name": table}
    ).json()
    api.post("/api/v1/table-descriptions/sync-schemas", json={"ids": [rows[0]["id"]]})
    url = f"/api/v1/table-descriptions/{rows[0]['id']}"
    until(lambda: api.get(url).json()["status"] in ("SCANNED", "FAILED"), "the scan finished")
    assert api.get(url).json()["status"] == "SCANNED", api.get(url).json()["error_message"]


def test_a_wrong_ssh_password_is_a_400_not_a_hang(api: httpx.Client, pg_url: str, sshd: dict):
    wrong = {"host": sshd["host"], "port": sshd["port"], "username": "root", "password": "nope-x9"}
    response = api.post(
        "/api/database-connections",
        json={
            "alias": unique("ssh"),
            "connection_uri": pg_url,
            "use_ssh": True,
            "ssh_settings": wrong,
        },
    )

    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "invalid_database_connection"
    assert "nope-x9" not in response.text
