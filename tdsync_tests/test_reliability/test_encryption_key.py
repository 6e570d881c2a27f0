"""The encryption key: missing, malformed or not the catalogue's key stops the API and the CLI at
start with a clear error; connection URIs are never stored in plaintext."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tdsync.store import CatalogueStore
from tdsync.store.client import open_store
from tdsync_tests.test_api.live import free_port, isolated_env, settings_for
from tdsync_tests.test_reliability.conftest import CANARY

TDSYNC = str(Path(sys.executable).parent / "tdsync")
OTHER_KEY = Fernet.generate_key().decode()
KEYS = {
    "missing": (None, "TDSYNC_ENCRYPTION_KEY must be set"),
    "malformed": ("not-a-fernet-key", "TDSYNC_ENCRYPTION_KEY is not a valid Fernet key"),
    "wrong": (OTHER_KEY, "TDSYNC_ENCRYPTION_KEY is not the key"),
}


@pytest.fixture(scope="module")
def catalogue_env(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory):
    """A catalogue holding one connection, encrypted with its environment's key."""
    env = isolated_env(mongo_uri, tmp_path_factory.mktemp("keys"))
    store = open_store(settings_for(env))
    store.add_connection(
        alias="warehouse",
        connection_uri=f"postgresql://reader:{CANARY}@db.internal:5432/sales",
    )
    yield env, store
    store.client.drop_database(env["TDSYNC_MONGO_DB"])


def run_tdsync(env: dict[str, str], key: str | None, *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TDSYNC_", "DAGSTER_"))}
    env = {**base, **env, "COLUMNS": "300", "NO_COLOR": "1"}
    env.pop("TDSYNC_ENCRYPTION_KEY")
    if key is not None:
        env["TDSYNC_ENCRYPTION_KEY"] = key
    return subprocess.run([TDSYNC, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", list(KEYS))
def test_api_and_cli_stop_at_start_with_a_clear_error_when_the_key_is(
    case: str, catalogue_env: tuple[dict[str, str], CatalogueStore]
):
    env, _ = catalogue_env
    key, words = KEYS[case]

    api = run_tdsync(env, key, "api", "--port", str(free_port()))
    cli = run_tdsync(env, key, "connections", "list")

    for done in (api, cli):
        assert done.returncode == 1, done.stdout + done.stderr
        assert "[configuration_error]" in done.stderr and words in done.stderr
        assert "Traceback" not in done.stderr and CANARY not in done.stdout + done.stderr
    assert "Uvicorn running" not in api.stdout + api.stderr


def test_connection_uris_are_stored_encrypted(
    catalogue_env: tuple[dict[str, str], CatalogueStore],
):
    env, store = catalogue_env
    [raw] = list(store.connections.find())

    token = raw["connection_uri"]
    assert CANARY not in repr(raw) and "db.internal" not in repr(raw)
    assert Fernet(env["TDSYNC_ENCRYPTION_KEY"].encode()).decrypt(token.encode()).decode() == (
        f"postgresql://reader:{CANARY}@db.internal:5432/sales"
    )
    assert store.get_connection("warehouse").connection_uri == (
        "postgresql://reader:*****@db.internal:5432/sales"
    )
