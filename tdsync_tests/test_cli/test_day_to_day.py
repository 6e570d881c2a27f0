"""Issue 15, day-to-day operation through the `tdsync` command: which home a command uses,
`connections update`, the way out of `empty_database`, schedules in `connections list`, and
output that can be copied from a log."""

import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync_tests.test_cli.conftest import TDSYNC


@pytest.fixture
def shop(sqlite_path: Path) -> str:
    with sqlite3.connect(sqlite_path) as db:
        db.executescript("CREATE TABLE orders (id INTEGER); CREATE TABLE customers (id INTEGER);")
    return f"sqlite:///{sqlite_path}"


def test_without_tdsync_home_every_directory_uses_the_one_per_user_catalogue(
    tdsync_env, store, shop, tmp_path
):
    env = {k: v for k, v in os.environ.items() if k not in ("TDSYNC_HOME", "XDG_DATA_HOME")}
    env["HOME"] = str(tmp_path / "me")
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [TDSYNC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
        )

    added = run(here, "connections", "add", "shop", shop)
    listed = run(there, "connections", "list")

    home = tmp_path / "me" / ".local" / "share" / "tdsync"
    assert added.returncode == 0, added.stderr
    assert listed.returncode == 0, listed.stderr
    for result in (added, listed):
        first = result.stderr.splitlines()[0]
        assert first.startswith(f"tdsync: home {home}; store MongoDB at 127.0.0.1:"), first
        assert f"database {tdsync_env['TDSYNC_MONGO_DB']}" in first
    assert "shop" in listed.stdout
    assert not (here / ".tdsync").exists() and not (there / ".tdsync").exists()


def test_update_changes_only_what_it_is_given_with_the_apis_checks(tdsync, store, shop, tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).executescript("CREATE TABLE invoices (id INTEGER);")
    assert tdsync("connections", "add", "shop", shop, "--schedule", "0 * * * *").returncode == 0
    assert tdsync("connections", "add", "taken", shop).returncode == 0
    conn = store.get_connection("shop")

    scheduled = tdsync("connections", "update", "shop", "--schedule", "*/15 * * * *")
    renamed = tdsync("connections", "update", conn.id, "--alias", "boutique", "--schema", "main")
    moved = tdsync("connections", "update", "boutique", "--uri", f"sqlite:///{other}")
    after_moves = store.get_connection(conn.id)
    bad_cron = tdsync("connections", "update", "boutique", "--schedule", "every hour")
    bad_uri = tdsync("connections", "update", "boutique", "--uri", "sqlite:////no/such/file.db")
    bad_schema = tdsync("connections", "update", "boutique", "--schema", "nope")
    taken = tdsync("connections", "update", "boutique", "--alias", "taken")
    nothing = tdsync("connections", "update", "boutique")
    cleared = tdsync("connections", "update", "boutique", "--no-schedule", "--default-schema")

    for ok in (scheduled, renamed, moved, cleared):
        assert ok.returncode == 0, ok.stderr
    assert f"updated boutique sqlite:///{other} id={conn.id}" in moved.stdout
    assert after_moves.alias == "boutique" and after_moves.schemas == ["main"]
    assert after_moves.refresh_schedule == "*/15 * * * *"
    assert store.connection_uri(conn.id) == f"sqlite:///{other}"
    for refused, code in (
        (bad_cron, "validation_error"),
        (bad_uri, "invalid_database_connection"),
        (bad_schema, "invalid_database_connection"),
        (taken, "duplicate_alias"),
        (nothing, "validation_error"),
    ):
        assert refused.returncode == 1 and f"[{code}]" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    final = store.get_connection(conn.id)
    assert (final.alias, final.schemas, final.refresh_schedule) == ("boutique", None, None)
    assert store.connection_uri(conn.id) == f"sqlite:///{other}"


def test_update_never_shows_the_password(tdsync, store, pg_url):
    with_password = pg_url.replace("postgres@", "postgres:s3cret-pw@")
    assert tdsync("connections", "add", "warehouse", pg_url).returncode == 0

    updated = tdsync("connections", "update", "warehouse", "--uri", with_password)

    assert updated.returncode == 0, updated.stderr
    assert "postgres:*****@" in updated.stdout
    assert "s3cret-pw" not in updated.stdout + updated.stderr
    assert store.connection_uri("warehouse") == with_password


def test_update_with_the_uri_as_listed_keeps_the_stored_password(tdsync, store, pg_url):
    with_password = pg_url.replace("postgres@", "postgres:s3cret-pw@")
    assert tdsync("connections", "add", "warehouse", with_password).returncode == 0
    masked = with_password.replace("s3cret-pw", "*****")

    updated = tdsync("connections", "update", "warehouse", "--uri", masked)
    moved = tdsync(
        "connections", "update", "warehouse", "--uri", masked.replace("127.0.0.1", "localhost")
    )

    assert updated.returncode == 0, updated.stderr
    assert store.connection_uri("warehouse") == with_password
    assert moved.returncode == 1 and "invalid_database_connection" in moved.stderr
    assert store.connection_uri("warehouse") == with_password


def test_an_emptied_schema_is_refused_with_the_way_out_then_deprecated_once_confirmed(
    tdsync, store, shop, sqlite_path, settings: Settings
):
    conn = store.add_connection(alias="shop", connection_uri=shop)
    runs.refresh(conn.id, trigger="cli", settings=settings)
    sqlite3.connect(sqlite_path).executescript("DROP TABLE orders; DROP TABLE customers;")

    refused = tdsync("refresh", "shop")
    statuses_after_refusal = {d.status.value for d in store.list_descriptions(conn.id)}
    confirmed = tdsync("refresh", "shop", "--allow-empty", "main")
    statuses_after_confirmation = {d.status.value for d in store.list_descriptions(conn.id)}
    again = tdsync("refresh", "shop")

    assert refused.returncode == 1
    assert "[empty_database] schema 'main' listed no tables or views" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert "tdsync refresh CONNECTION --allow-empty main" in refused.stderr
    assert '"allow_empty_schemas": ["main"]' in refused.stderr
    assert statuses_after_refusal == {"NOT_SCANNED"}
    assert confirmed.returncode == 0, confirmed.stderr
    assert "deprecated 2" in confirmed.stdout
    assert statuses_after_confirmation == {"DEPRECATED"}
    assert again.returncode == 0, again.stderr  # the confirmation was needed once
    assert "deprecated 0" in again.stdout


def test_list_shows_schedules_and_copyable_ids_and_uris_when_not_a_terminal(
    tdsync_env, store, tmp_path, settings: Settings
):
    # A long path: a table narrowed to 80 columns would wrap or cut it.
    folder = tmp_path / ("a-rather-long-folder-name-" * 4)
    folder.mkdir()
    source = folder / "shop.db"
    sqlite3.connect(source).executescript("CREATE TABLE orders (id INTEGER);")
    conn = store.add_connection(
        alias="shop", connection_uri=f"sqlite:///{source}", refresh_schedule="0 3 * * *"
    )
    runs.refresh(conn.id, trigger="cli", settings=settings)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}

    listed = subprocess.run(
        [TDSYNC, "connections", "list"], env=env, capture_output=True, text=True, timeout=120
    )

    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if conn.id in line]
    assert f"sqlite:///{source}" in row
    assert "0 3 * * *" in row
    assert re.search(r"\d{4}-\d\d-\d\d 03:00 UTC", row), row  # the next scheduled refresh
    assert "…" not in listed.stdout
