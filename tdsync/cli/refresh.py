"""Shell (CLI): `tdsync refresh CONNECTION [--all | --json]`: a refresh run, then what a person can read.

By default: what changed, the counts by status, and at most a screenful of rows (the changed ones
first); the whole catalogue only when it fits. `--all` prints every row, one line each, as the
store's cursor is read; `--json` writes the API's JSON array (tdsync.domain.description_json), streamed.
Memory stays flat either way: 100,000 rows in a rich table took 590 MB and two minutes.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tdsync.config.settings import Settings
from tdsync.domain.description_json import json_array_chunks
from tdsync.domain.models import Status
from tdsync.store import CatalogueStore

# What each step of the refresh job is doing, for the progress display.
STEPS = {
    "load_connection": "loading the connection",
    "list_live_tables": "listing the live tables",
    "diff_against_catalogue": "comparing with the catalogue",
    "write_statuses": "writing what changed",
    "table_description_checks": "checking the catalogue",
}
CHANGES = ("added", "deprecated", "restored", "renamed")
SUMMARY_LINE = (*CHANGES, "retyped", "expired_leases", "unchanged")
LINES_AROUND_ROWS = 10  # the summary, the table's header and frame, the prompt


def refresh_and_print(
    console: Console,
    err_console: Console,
    store: CatalogueStore,
    connection: str,
    *,
    allow_empty_schemas: list[str] | None,
    show: str,
    settings: Settings,
) -> None:
    """Refresh a connection (id or alias) and print it: `show` is "screen", "all" or "json"."""
    conn = store.get_connection(connection)  # before importing Dagster: fast errors
    from tdsync.defs import runs

    run_id = str(uuid.uuid4())
    started = time.perf_counter()
    with _progress(err_console, conn.alias, run_id, settings):
        summary = runs.refresh(
            conn.id,
            trigger="cli",
            allow_empty_schemas=allow_empty_schemas,
            run_id=run_id,
            settings=settings,
        )
    elapsed = time.perf_counter() - started
    if show == "json":
        _write_json(store, conn.id)
        return
    console.print(
        f"refreshed [cyan]{escape(conn.alias)}[/] in {elapsed:.1f} s: "
        + ", ".join(f"{k} {summary[k]}" for k in SUMMARY_LINE if k in summary),
        highlight=False,
    )
    counts = {s.value: summary.get(s.value, 0) for s in Status}
    total = summary.get("total", sum(counts.values()))
    console.print(
        f"{total:,} table(s): "
        + (", ".join(f"{n:,} {s}" for s, n in counts.items() if n) or "none"),
        highlight=False,
    )
    if show == "all":
        _print_every_row(console, store, conn.id)
        return
    room = max(5, console.height - LINES_AROUND_ROWS)
    changed = changed_rows(summary)
    if total <= room:  # the whole catalogue fits: one small read
        _print_catalogue(console, store, conn.id, changed)
        return
    shown = changed[:room]
    if shown:
        table = Table("change", "table")
        for change, name in shown:
            table.add_row(change, escape(name))
        console.print(table)
    console.print(
        f"… {total - len(shown):,} more table(s) not shown; use --all or --json to list every one",
        highlight=False,
    )


def changed_rows(summary: dict) -> list[tuple[str, str]]:
    """(change, `schema.table`) of what the refresh changed, as its summary names them (at most
    50 of each kind, then an "… and N more" entry)."""
    return [
        (change, name)
        for change in CHANGES
        for name in summary.get(f"{change}_tables") or []
        if not name.startswith("… and ")
    ]


def _print_catalogue(
    console: Console, store: CatalogueStore, connection_id: str, changed: list[tuple[str, str]]
) -> None:
    change_of = {name: change for change, name in changed}
    for change, name in changed:
        if change == "renamed":  # `schema.old -> new`: the row has its new name now
            schema_old, _, new = name.partition(" -> ")
            change_of[f"{schema_old.rpartition('.')[0]}.{new}"] = f"renamed from {schema_old}"
    rows = store.list_descriptions(connection_id)
    rows.sort(key=lambda d: f"{d.schema_name}.{d.table_name}" not in change_of)  # stable
    table = Table("schema", "table", "type", "status", "change", "description")
    for desc in rows:
        table.add_row(
            escape(desc.schema_name),
            escape(desc.table_name),
            desc.table_type.value,
            desc.status.value,
            escape(change_of.get(f"{desc.schema_name}.{desc.table_name}", "")),
            escape(desc.description or ""),
        )
    console.print(table)


def _print_every_row(console: Console, store: CatalogueStore, connection_id: str) -> None:
    """Every row, one tab-separated line each, printed as the cursor is read."""
    out = console.file
    out.write("schema\ttable\ttype\tstatus\tdescription\n")
    for doc in store.description_docs(connection_id, batch_size=2_000):
        description = (doc.get("description") or "").replace("\n", " ")
        out.write(
            f"{doc['schema_name']}\t{doc['table_name']}\t{doc.get('table_type', 'TABLE')}\t"
            f"{doc.get('status', '')}\t{description}\n"
        )
    out.flush()


def _write_json(store: CatalogueStore, connection_id: str) -> None:
    """The API's answer for the connection, byte for byte, on stdout."""
    out = sys.stdout.buffer
    docs = store.description_docs(connection_id, batch_size=2_000)
    for chunk in json_array_chunks(docs, store.refreshed_at(connection_id)):
        out.write(chunk)
    out.write(b"\n")
    out.flush()


class _progress:
    """While the run lasts, which step it is in, on stderr and only on a terminal."""

    def __init__(self, err_console: Console, alias: str, run_id: str, settings: Settings) -> None:
        self.console, self.alias, self.run_id = err_console, alias, run_id
        self.settings = settings
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _progress:
        if self.console.is_terminal:
            self._thread = threading.Thread(target=self._show, name="tdsync-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _show(self) -> None:
        from tdsync.defs import runs

        with self.console.status(self._text("starting the run")) as status:
            while not self._done.wait(0.25):
                step = _current_step(runs.instance(self.settings), self.run_id)
                if step:
                    status.update(self._text(step))

    def _text(self, step: str) -> str:
        return f"refreshing [cyan]{escape(self.alias)}[/]: {step}…"


def _current_step(dagster_instance, run_id: str) -> str | None:
    """The step the run last started, in words (None before the run exists)."""
    import dagster as dg

    records = dagster_instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_START, ascending=False, limit=1
    ).records
    if not records:
        return None
    step = records[0].event_log_entry.step_key or ""
    return STEPS.get(step.rpartition(".")[2], step)
