"""`tdsync refresh`: what a person reads (issue 18): a summary, at most a screenful of rows with
the changed ones first, `--all` and `--json` for the rest, a progress display on a terminal."""

import json
import os
import pty
import sqlite3
import subprocess

import pytest
from pydantic import TypeAdapter

from tdsync.cli.refresh import STEPS
from tdsync.domain.models import TableDescription
from tdsync_tests.test_cli.conftest import TDSYNC


@pytest.fixture
def shop(sqlite_path, tdsync, store) -> sqlite3.Connection:
    """A registered connection `shop` of twelve tables t00..t11, refreshed once."""
    db = sqlite3.connect(sqlite_path, isolation_level=None)
    db.executescript("".join(f"CREATE TABLE t{i:02d} (id INTEGER);" for i in range(12)))
    assert tdsync("connections", "add", "shop", f"sqlite:///{sqlite_path}").returncode == 0
    return db


def rows_of(stdout: str) -> list[list[str]]:
    """The cells of a rich table's body rows."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in stdout.splitlines()
        if line.startswith("│")
    ]


def test_a_catalogue_that_fits_is_listed_whole_with_the_changed_rows_first(tdsync, shop):
    shop.executescript('DROP TABLE t03; CREATE TABLE "Zoë" (id INTEGER, name TEXT);')

    result = tdsync("refresh", "shop")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("refreshed shop in ")
    assert lines[0].endswith(
        ": added 1, deprecated 1, restored 0, renamed 0, retyped 0, expired_leases 0, unchanged 11"
    )
    assert lines[1] == "13 table(s): 12 NOT_SCANNED, 1 DEPRECATED"
    rows = rows_of(result.stdout)
    assert [r[:5] for r in rows[:2]] == [
        ["main", "Zoë", "TABLE", "NOT_SCANNED", "added"],
        ["main", "t03", "TABLE", "DEPRECATED", "deprecated"],
    ]
    assert [r[1] for r in rows[2:]] == [f"t{i:02d}" for i in range(12) if i != 3]
    assert "more table(s) not shown" not in result.stdout


def test_a_catalogue_taller_than_the_screen_shows_what_changed_and_how_to_see_the_rest(
    tdsync, shop
):
    shop.executescript("CREATE TABLE new_a (id INTEGER); CREATE TABLE new_b (id INTEGER);")

    result = tdsync("refresh", "shop", env={"LINES": "15"})  # room for 5 rows

    assert result.returncode == 0, result.stderr
    assert "14 table(s): 14 NOT_SCANNED" in result.stdout
    assert rows_of(result.stdout) == [["added", "main.new_a"], ["added", "main.new_b"]]
    assert result.stdout.rstrip().endswith(
        "… 12 more table(s) not shown; use --all or --json to list every one"
    )
    assert "t00" not in result.stdout


def test_all_prints_every_table_one_line_each(tdsync, shop):
    result = tdsync("refresh", "shop", "--all", env={"LINES": "15"})

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2] == "schema\ttable\ttype\tstatus\tdescription"
    assert lines[3:] == [f"main\tt{i:02d}\tTABLE\tNOT_SCANNED\t" for i in range(12)]


def test_json_writes_the_apis_answer_and_nothing_else(tdsync, shop, store):
    result = tdsync("refresh", "shop", "--json")

    assert result.returncode == 0, result.stderr
    (conn,) = store.list_connections()
    expected = TypeAdapter(list[TableDescription]).dump_json(store.list_descriptions(conn.id))
    assert result.stdout.encode() == expected + b"\n"
    assert len(json.loads(result.stdout)) == 12


def test_all_and_json_cannot_be_combined(tdsync, shop):
    result = tdsync("refresh", "shop", "--all", "--json")

    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


def test_progress_shows_on_a_terminal_only(tdsync, shop, tdsync_env):
    piped = tdsync("refresh", "shop")
    # stderr on a terminal, stdout piped: the progress goes to the terminal alone.
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [TDSYNC, "refresh", "shop"],
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    seen = b""
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # the process closed the terminal
            break
        if not data:
            break
        seen += data
    stdout, _ = proc.communicate(timeout=120)
    os.close(controller)

    assert proc.returncode == 0
    shown = seen.decode(errors="replace")
    assert "refreshing shop: " in shown and "refreshing" not in stdout
    assert any(f"refreshing shop: {step}…" in shown for step in STEPS.values())
    assert "refreshing shop" not in piped.stderr + piped.stdout
    assert stdout.startswith("refreshed shop in ")
