"""Shell (CLI): The `tdsync` command line: thin shells over the store, the jobs and the API server."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tdsync.domain.errors import TdsyncError


def make_console(*, stderr: bool = False) -> Console:
    """A terminal's console; anywhere else (a pipe, a log file) one that never wraps a line or
    truncates a table cell to fit a width nobody sees, so URLs and ids can be copied from it."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=100_000, soft_wrap=True)


console = make_console()
err_console = make_console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from tdsync.config.settings import Settings

    try:
        # The command's settings, read from the environment once and passed down.
        args.settings = Settings.from_env()
        _print_where(args.settings)
        args.func(args)
    except TdsyncError as exc:
        print_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _print_where(settings) -> None:
    """Which home and store this command uses: a command run with another TDSYNC_HOME (or
    TDSYNC_MONGO_URI) works on another catalogue, and says so (on stderr, beside the output)."""
    err_console.print(f"[dim]tdsync: {escape(settings.where())}[/]", highlight=False)


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
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the API and the Dagster UI listen on (default 127.0.0.1; the UI has no "
        "authentication, see README Security)",
    )
    p.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    p.add_argument("--dagster-port", type=int, default=3000, help="Dagster UI port (default 3000)")

    p = command("api", _api, "Serve the HTTP API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    command("demo", _demo, "Build a sample shop database, register it and refresh it.")

    p = command("refresh", _refresh, "Refresh a connection's table descriptions (Dagster run).")
    p.add_argument("connection", metavar="CONNECTION", help="connection id or alias")
    p.add_argument(
        "--allow-empty",
        action="append",
        dest="allow_empty_schemas",
        metavar="SCHEMA",
        help="confirm SCHEMA is empty now: deprecate its tables instead of failing with "
        "empty_database (repeatable; this refresh only)",
    )
    shown = p.add_mutually_exclusive_group()
    shown.add_argument(
        "--all",
        action="store_true",
        help="print every table, one line each (default: what changed and at most a screenful)",
    )
    shown.add_argument(
        "--json",
        action="store_true",
        help="write the connection's table descriptions as one JSON array, as the API answers",
    )

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

    conns = sub.add_parser("connections", help="Add, list, update and remove connections.")
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
    p = csub.add_parser(
        "list", help="List connections (passwords masked), their schedules and last refresh."
    )
    p.set_defaults(func=_connections_list)
    p = csub.add_parser(
        "update",
        help="Change a connection: only the options given change, with the API's checks.",
    )
    p.set_defaults(func=_connections_update)
    p.add_argument("connection", metavar="CONNECTION", help="connection id or alias")
    _update_options(p)
    p = csub.add_parser("remove", help="Remove a connection and its descriptions.")
    p.set_defaults(func=_connections_remove)
    p.add_argument("connection", metavar="CONNECTION", help="connection id or alias")
    return parser


def _store(args: argparse.Namespace):
    from tdsync.store.client import shared_store

    return shared_store(args.settings)


def _dev(args: argparse.Namespace) -> None:
    from tdsync.cli.dev import run_dev

    run_dev(
        host=args.host,
        api_port=args.port,
        dagster_port=args.dagster_port,
        console=console,
        settings=args.settings,
    )


def _api(args: argparse.Namespace) -> None:
    from tdsync.api.server import serve

    serve(args.settings, args.host, args.port)


def _demo(args: argparse.Namespace) -> None:
    from tdsync.cli.demo import run_demo

    run_demo(args.settings, console)


def _refresh(args: argparse.Namespace) -> None:
    from tdsync.cli.refresh import refresh_and_print

    refresh_and_print(
        console,
        err_console,
        _store(args),
        args.connection,
        allow_empty_schemas=args.allow_empty_schemas,
        show="json" if args.json else "all" if args.all else "screen",
        settings=args.settings,
    )


def _scan(args: argparse.Namespace) -> None:
    from tdsync.cli.scan import NO_DATA_SCAN, scan_with_progress

    options = {
        **(NO_DATA_SCAN if args.no_data else {}),
        **({"changed_only": True} if args.changed else {}),
    }
    scan_with_progress(
        console, _store(args), args.connection, args.tables, options=options, settings=args.settings
    )


def _connections_add(args: argparse.Namespace) -> None:
    from tdsync.defs.runs import DagsterRunStarter
    from tdsync.domain.cron import validate_refresh_schedule
    from tdsync.services.connections import register_connection

    # Before connecting, which can take seconds.
    validate_refresh_schedule(args.refresh_schedule)
    validate_refresh_schedule(args.scan_schedule, "scan_schedule")
    store = _store(args)
    conn = register_connection(
        store,
        runs=DagsterRunStarter(store, args.settings, "cli"),
        timeout_s=args.settings.source_timeout_s,
        settings=args.settings,
        alias=args.alias,
        connection_uri=args.connection_uri,
        schemas=args.schemas,
        refresh_schedule=args.refresh_schedule,
        auto_scan=args.auto_scan,
        scan_schedule=args.scan_schedule,
    )
    console.print(f"added [cyan]{conn.alias}[/] {conn.connection_uri} id={conn.id}")


def _update_options(p: argparse.ArgumentParser) -> None:
    """`connections update`'s options: each maps to one field of the API's PUT body."""
    p.add_argument("--alias", help="new alias")
    p.add_argument("--uri", dest="connection_uri", help="new connection URI (checked first)")
    schemas = p.add_mutually_exclusive_group()
    schemas.add_argument(
        "--schema",
        action="append",
        dest="schemas",
        help="schema to catalogue (repeatable; replaces the list)",
    )
    schemas.add_argument(
        "--default-schema",
        action="store_true",
        help="catalogue the database's default schema only (no schemas list)",
    )
    schedule = p.add_mutually_exclusive_group()
    schedule.add_argument(
        "--schedule", dest="refresh_schedule", help="cron string (UTC) for scheduled refreshes"
    )
    schedule.add_argument("--no-schedule", action="store_true", help="no scheduled refreshes")
    # More connection fields (auto-scan, scan schedule) get their flags here.


def _connections_update(args: argparse.Namespace) -> None:
    """What `PUT /api/v1/database-connections/{id}` does: the same field checks (its body model),
    the source tried when the URI or schemas change, then the same store method."""
    import pydantic

    from tdsync.api.schemas import ConnectionUpdate
    from tdsync.domain.errors import ValidationFailed
    from tdsync.services.connections import change_connection

    fields = ("alias", "connection_uri", "schemas", "refresh_schedule")
    changes = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    if args.default_schema:
        changes["schemas"] = None
    if args.no_schedule:
        changes["refresh_schedule"] = None
    if not changes:
        raise ValidationFailed(
            "nothing to change: give at least one option (see tdsync connections update --help)"
        )
    try:
        changes = ConnectionUpdate.model_validate(changes).changes()
    except pydantic.ValidationError as exc:
        raise ValidationFailed(
            "invalid connection fields", exc.errors(include_url=False, include_context=False)
        ) from None
    store = _store(args)
    conn = change_connection(
        store,
        store.get_connection(args.connection),
        changes,
        timeout_s=args.settings.source_timeout_s,
        settings=args.settings,
    )
    console.print(f"updated [cyan]{escape(conn.alias)}[/] {conn.connection_uri} id={conn.id}")


def _connections_list(args: argparse.Namespace) -> None:
    from tdsync.domain.cron import cron_problem, next_fire_after
    from tdsync.domain.models import utcnow

    table = Table()
    columns = ("id", "alias", "dialect", "uri", "schemas", "schedule (UTC)", "next refresh")
    for column in (*columns, "last refreshed"):
        # Ids are copied from here: never shortened, whatever the terminal's width.
        table.add_column(column, no_wrap=column == "id", min_width=24 if column == "id" else None)
    now = utcnow()
    for conn in _store(args).list_connections():
        schedule = conn.refresh_schedule if not cron_problem(conn.refresh_schedule or "") else None
        table.add_row(
            conn.id,
            conn.alias,
            conn.dialect,
            conn.connection_uri,
            ", ".join(conn.schemas or []) or "(default)",
            conn.refresh_schedule or "none",
            _moment(next_fire_after(schedule, now)) if schedule else "-",
            _moment(conn.last_refreshed_at) if conn.last_refreshed_at else "never",
        )
    console.print(table)


def _moment(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _connections_remove(args: argparse.Namespace) -> None:
    store = _store(args)
    conn = store.get_connection(args.connection)
    store.delete_connection(conn.id)
    console.print(f"removed [cyan]{conn.alias}[/] and its table descriptions")


if __name__ == "__main__":
    sys.exit(main())
