"""The `tdsync` command line: thin shells over the store, the jobs and the API server."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tdsync.errors import TdsyncError

console = Console()
err_console = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except TdsyncError as exc:
        print_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def print_error(exc: TdsyncError) -> None:
    """One line with the error code and message, then the detail as `key: value` lines."""
    err_console.print(
        f"[bold red]error[/] {escape(f'[{exc.error_code}]')} {escape(exc.message)}",
        highlight=False,
    )
    detail = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
    for key, value in detail.items():
        if value is None:
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            text = "".join(f"\n    {line}" for line in value)
        else:
            text = " " + (value if isinstance(value, str) else json.dumps(value, default=str))
        err_console.print(f"  {escape(str(key))}:{escape(text)}", highlight=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tdsync",
        description="Keep a catalogue of table descriptions in sync with SQL databases.",
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    def command(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = command(
        "dev", _dev, "Run everything for local use: store, Dagster webserver + daemon, the API."
    )
    p.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    p.add_argument("--dagster-port", type=int, default=3000, help="Dagster UI port (default 3000)")

    p = command("api", _api, "Serve the HTTP API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    command("demo", _demo, "Build a sample shop database, register it and refresh it.")

    p = command("refresh", _refresh, "Refresh a connection's table descriptions (Dagster run).")
    p.add_argument("connection", metavar="CONNECTION", help="connection id or alias")

    p = command(
        "scan", _scan, "Scan a connection's tables: columns, keys, categories, samples, DDL."
    )
    p.add_argument("connection", metavar="CONNECTION", help="connection id or alias")
    p.add_argument("--table", action="append", dest="tables", help="only this table (repeatable)")
    p.add_argument(
        "--no-data",
        action="store_true",
        help="read no rows: columns, keys and DDL only (no categories, no example rows)",
    )
    p.add_argument(
        "--changed",
        action="store_true",
        help="re-read only tables never scanned, FAILED, or changed in structure since their scan",
    )

    conns = sub.add_parser("connections", help="Add, list and remove connections.")
    conns.set_defaults(func=lambda args: conns.print_help())
    csub = conns.add_subparsers(metavar="ACTION")
    p = csub.add_parser("add", help="Register a database connection.")
    p.set_defaults(func=_connections_add)
    p.add_argument("alias")
    p.add_argument("connection_uri", metavar="URI")
    p.add_argument(
        "--schema", action="append", dest="schemas", help="schema to catalogue (repeatable)"
    )
    p.add_argument(
        "--schedule", dest="refresh_schedule", help="cron string for scheduled refreshes"
    )
    p.add_argument(
        "--auto-scan",
        action="store_true",
        help="scan the tables each refresh finds new, restored or renamed",
    )
    p.add_argument(
        "--scan-schedule", help="cron string for changed-only scans of the whole connection"
    )
    p = csub.add_parser("list", help="List connections (passwords masked).")
    p.set_defaults(func=_connections_list)
    p = csub.add_parser("remove", help="Remove a connection and its descriptions.")
    p.set_defaults(func=_connections_remove)
    p.add_argument("connection", metavar="CONNECTION", help="connection id or alias")
    return parser


def _store():
    from tdsync.catalogue import shared_store

    return shared_store()


def _dev(args: argparse.Namespace) -> None:
    from tdsync.dev import run_dev

    run_dev(api_port=args.port, dagster_port=args.dagster_port)


def _api(args: argparse.Namespace) -> None:
    from tdsync.api.server import serve

    serve(args.host, args.port)


def _demo(args: argparse.Namespace) -> None:
    from tdsync.demo import run_demo

    run_demo(console)


def _refresh(args: argparse.Namespace) -> None:
    store = _store()
    conn = store.get_connection(args.connection)  # before importing Dagster: fast errors

    from tdsync import runs
    from tdsync.demo import print_catalogue

    with console.status(
        f"refreshing [cyan]{conn.alias}[/] through the refresh_table_descriptions job…"
    ):
        summary = runs.refresh(conn.id, trigger="cli")
    console.print(", ".join(f"{k} {v}" for k, v in summary.items()))
    print_catalogue(console, store, conn.id)


def _scan(args: argparse.Namespace) -> None:
    from tdsync.cli_scan import NO_DATA_SCAN, scan_with_progress

    options = {
        **(NO_DATA_SCAN if args.no_data else {}),
        **({"changed_only": True} if args.changed else {}),
    }
    scan_with_progress(console, _store(), args.connection, args.tables, options=options)


def _connections_add(args: argparse.Namespace) -> None:
    from tdsync.config import Settings
    from tdsync.cron import validate_refresh_schedule
    from tdsync.sources import check_connection

    # Before connecting, which can take seconds.
    validate_refresh_schedule(args.refresh_schedule)
    validate_refresh_schedule(args.scan_schedule, "scan_schedule")
    check_connection(
        args.connection_uri, args.schemas, timeout_s=Settings.from_env().source_timeout_s
    )
    conn = _store().add_connection(
        alias=args.alias,
        connection_uri=args.connection_uri,
        schemas=args.schemas,
        refresh_schedule=args.refresh_schedule,
        auto_scan=args.auto_scan,
        scan_schedule=args.scan_schedule,
    )
    console.print(f"added [cyan]{conn.alias}[/] {conn.connection_uri} id={conn.id}")


def _connections_list(args: argparse.Namespace) -> None:
    table = Table()
    for column in ("id", "alias", "dialect", "uri", "schemas", "schedule", "last refreshed"):
        table.add_column(column)
    for conn in _store().list_connections():
        table.add_row(
            conn.id,
            conn.alias,
            conn.dialect,
            conn.connection_uri,
            ", ".join(conn.schemas or []) or "(default)",
            conn.refresh_schedule or "",
            conn.last_refreshed_at.isoformat(timespec="seconds")
            if conn.last_refreshed_at
            else "never",
        )
    console.print(table)


def _connections_remove(args: argparse.Namespace) -> None:
    store = _store()
    conn = store.get_connection(args.connection)
    store.delete_connection(conn.id)
    console.print(f"removed [cyan]{conn.alias}[/] and its table descriptions")


if __name__ == "__main__":
    sys.exit(main())
