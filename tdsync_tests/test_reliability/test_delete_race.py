"""DELETE of a connection while another process refreshes it leaves no description behind.

The API's DELETE cannot wait for a refresh it did not start (a schedule's, the CLI's, another API
process's); the refresh's inserts landing after the delete used to outlive their connection as
orphans no route shows (the tester's 4,000-table trial: 2 runs of 3).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tdsync.defs import runs
from tdsync.domain.errors import ConnectionNotFound
from tdsync.store import CatalogueStore
from tdsync_tests.conftest import until
from tdsync_tests.test_api.live import ApiProcess, settings_for, unique
from tdsync_tests.test_reliability.conftest import child_env

CONNECTIONS = "/api/v1/database-connections"
TDSYNC = str(Path(sys.executable).parent / "tdsync")


def source_with_tables(path: Path, count: int) -> str:
    with sqlite3.connect(path) as conn:
        for i in range(count):
            conn.execute(f"CREATE TABLE t{i:05d} (id INTEGER PRIMARY KEY)")
    return f"sqlite:///{path}"


def register(api: ApiProcess, uri: str) -> dict:
    with api.client() as client:
        created = client.post(CONNECTIONS, json={"alias": unique("doomed"), "connection_uri": uri})
    assert created.status_code == 201, created.text
    return created.json()


def delete(api: ApiProcess, connection_id: str) -> None:
    with api.client() as client:
        assert client.delete(f"{CONNECTIONS}/{connection_id}").status_code == 204


def descriptions_of(store: CatalogueStore, connection_id: str) -> int:
    return store.descriptions.count_documents({"db_connection_id": connection_id})


def test_a_delete_between_a_refreshs_read_and_its_inserts_leaves_no_description(
    reliability_api: ApiProcess,
    reliability_env: dict[str, str],
    reliability_store: CatalogueStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    # The worst moment, made certain: the refresh (here, in this test's process) has read the
    # catalogue and planned 200 inserts when the API (another process) deletes the connection.
    for key, value in reliability_env.items():
        monkeypatch.setenv(key, value)  # for the runs this process starts
    settings = settings_for(reliability_env)
    connection = register(reliability_api, source_with_tables(tmp_path / "src.db", 200))
    # The refresh's read of the catalogue starts with its version (issue 18), which may spare it
    # the read of the rows: the delete lands right after that first read.
    read_catalogue = CatalogueStore.catalogue_version

    def then_deleted(store: CatalogueStore, connection_id: str):
        stored = read_catalogue(store, connection_id)
        delete(reliability_api, connection["id"])
        return stored

    monkeypatch.setattr(CatalogueStore, "catalogue_version", then_deleted)

    with pytest.raises(ConnectionNotFound, match="deleted while it was being refreshed"):
        runs.refresh(connection["id"], trigger="cli", settings=settings)

    assert descriptions_of(reliability_store, connection["id"]) == 0
    assert reliability_store.connections.count_documents({"alias": connection["alias"]}) == 0


@pytest.mark.parametrize("trial", range(3))
def test_a_delete_racing_a_cli_refresh_of_3000_tables_leaves_no_description(
    reliability_api: ApiProcess,
    reliability_env: dict[str, str],
    reliability_store: CatalogueStore,
    tmp_path_factory: pytest.TempPathFactory,
    trial: int,
):
    source = tmp_path_factory.getbasetemp() / "race-3000.db"
    if not source.exists():
        source_with_tables(source, 3000)
    connection = register(reliability_api, f"sqlite:///{source}")
    refresh = subprocess.Popen(
        [TDSYNC, "refresh", connection["alias"]],
        env=child_env(**reliability_env, NO_COLOR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # DELETE as the refresh's inserts start landing.
        until(
            lambda: (
                descriptions_of(reliability_store, connection["id"]) > 0
                or refresh.poll() is not None
            ),
            "the refresh inserts",
        )
        delete(reliability_api, connection["id"])
        output, _ = refresh.communicate(timeout=120)
    finally:
        if refresh.poll() is None:
            refresh.kill()
            refresh.wait()

    assert descriptions_of(reliability_store, connection["id"]) == 0, output
    assert refresh.returncode == 0 or "database_connection_not_found" in output, output
