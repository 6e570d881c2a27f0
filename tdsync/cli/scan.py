"""Shell (CLI): `tdsync scan CONNECTION [--table T]… [--no-data]`: a scan run with a progress bar, then what
failed and why."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tdsync.config.settings import Settings
from tdsync.domain.models import Status
from tdsync.services.scan_progress import ScanProgress
from tdsync.store import CatalogueStore

SHOWN_FAILURES = 20
# The scan job's settings for a scan that reads no rows: no column is a category candidate and
# no example is taken, so only the catalogue is queried (columns, keys, DDL).
NO_DATA_SCAN = {"max_categories": 0, "example_rows": 0}


def scan_with_progress(
    console: Console,
    store: CatalogueStore,
    connection: str,
    tables: list[str] | None,
    *,
    options: dict[str, Any] | None = None,
    settings: Settings,
) -> None:
    """Scan a connection (by id or alias), refreshing it first if it was never refreshed."""
    conn = store.get_connection(connection)
    from tdsync.defs import runs  # after the checks above, so a mistyped name fails fast

    if sum(store.status_counts(conn.id).values()) == 0:
        # Nothing catalogued yet: a scan right after `connections add` should scan its tables.
        with console.status(f"refreshing [cyan]{escape(conn.alias)}[/] first…"):
            runs.refresh(conn.id, trigger="cli", settings=settings)
    if tables:
        store.scan_targets(connection_id=conn.id, table_names=tables)  # unknown names fail here

    columns = (
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[table]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(
            f"scanning {escape(conn.alias)}", total=None, failed="", table="starting the run…"
        )

        def show(update: ScanProgress) -> None:
            progress.update(
                task,
                total=update.total,
                completed=update.done,
                failed=f"[red]{update.failed} failed[/]" if update.failed else "",
                table=escape(update.table or ""),
            )

        summary = runs.scan(
            conn.id,
            trigger="cli",
            table_names=tables,
            options=options,
            on_progress=show,
            settings=settings,
        )
        progress.update(task, table="")
    console.print(
        f"scanned {summary.get('scanned', 0)} of {summary.get('tables', 0)} table(s), "
        f"{summary.get('failed', 0)} failed, {summary.get('drift', 0)} with schema drift"
        + (f", in {summary['duration_s']:.1f} s" if "duration_s" in summary else "")
    )
    if summary.get("failed"):
        failures = store.failed_descriptions(conn.id, limit=SHOWN_FAILURES)
        for name, error in failures.items():
            console.print(f"  [red]FAILED[/] {escape(name)}: {escape(error)}", highlight=False)
        more = store.descriptions_with_status(conn.id, Status.FAILED) - len(failures)
        if more > 0:
            console.print(f"  … and {more} more FAILED")
