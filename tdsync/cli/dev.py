"""Shell (CLI): `tdsync dev`: everything for local use in one command, stopped together by Ctrl-C.

The catalogue store (the embedded MongoDB-compatible server when TDSYNC_MONGO_URI is unset),
`dagster-webserver` and `dagster-daemon` on one Dagster instance (DAGSTER_HOME, so the UI shows
the runs the daemon and the API start), and the HTTP API in this process. Each Dagster process
runs in its own process group, so stopping sends it (and the code server and runs it started)
the same SIGINT a terminal's Ctrl-C would, then waits, and kills only what is still there.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.console import Console

from tdsync.config.settings import Settings, ensure_dagster_home
from tdsync.domain.errors import ConfigurationError

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
# Each log `tdsync dev` writes rotates at this size, keeping LOG_BACKUPS older files: the
# daemon alone wrote 242 KB in 11 minutes with two per-minute connections, without bound.
LOG_MAX_BYTES = int(os.environ.get("TDSYNC_LOG_MAX_BYTES") or 10 * 2**20)
LOG_BACKUPS = 3
STOP_TIMEOUT_S = 20.0
CODE_LOCATION = ["-m", "tdsync.definitions"]


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path


def run_dev(
    api_port: int = 8000,
    dagster_port: int = 3000,
    *,
    host: str = HOST,
    console: Console | None = None,
    settings: Settings,
) -> None:
    """Start everything, print where it listens, and stop it all on Ctrl-C or SIGTERM."""
    console = console or Console()
    ensure_dagster_home(settings)  # also exports DAGSTER_HOME to the processes started below
    _refuse_busy_ports(host, {"the API": api_port, "the Dagster UI": dagster_port})

    from tdsync.store.client import open_store
    from tdsync.store.embedded import embedded_uri

    embedded_before = settings.embedded and _embedded_running(settings.home)
    with console.status("opening the catalogue store…"):
        open_store(settings)  # starts the embedded server if needed; checks the key
    mongo = (
        f"embedded, {embedded_uri(settings.home).split('/?')[0]} (data in {settings.home / 'mongo'})"
        if settings.embedded
        else "TDSYNC_MONGO_URI"
    )

    _prepare_instance()
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    api_log = _log_api_to(logs / "api.log")
    children: list[Child] = []
    api: _ApiThread | None = None
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        children.append(
            _start(
                "dagster-webserver",
                ["-m", "dagster_webserver", *CODE_LOCATION, "-h", host, "-p", str(dagster_port)],
                logs,
            )
        )
        children.append(
            _start("dagster-daemon", ["-m", "dagster._daemon", "run", *CODE_LOCATION], logs)
        )
        api = _ApiThread(settings, host, api_port)
        api.start()
        shown = f"[{host}]" if ":" in host else host
        api_url, ui_url = f"http://{shown}:{api_port}", f"http://{shown}:{dagster_port}"
        with console.status("starting the API, the Dagster webserver and daemon…"):
            _wait_until_ready(children, api, f"{api_url}/health", f"{ui_url}/server_info")
        for line in (
            "[bold]tdsync dev[/] is running",
            f"  home         {settings.home}",
            f"  API          {api_url}  (OpenAPI docs at {api_url}/docs)",
            f"  Dagster UI   {ui_url}",
            "  Dagster      daemon running: schedules, sensors, queued runs",
            f"  DAGSTER_HOME {settings.dagster_home}",
            f"  MongoDB      {mongo}, database {settings.mongo_db}",
            f"  logs         {logs} (rotated at {LOG_MAX_BYTES // 1024} KiB)",
            "Press Ctrl-C to stop everything.",
        ):
            console.print(line, highlight=False)
        _watch(children, api)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if api is not None:
            api.stop()
        _stop(children)
        logging.getLogger().removeHandler(api_log)
        api_log.close()
        if settings.embedded and not embedded_before:
            from tdsync.store.embedded import stop_embedded

            stop_embedded(settings.home)
    console.print("tdsync dev stopped.")


class _ApiThread:
    """The HTTP API served by uvicorn in a thread of this process (signals stay with main)."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        import uvicorn

        from tdsync.api.app import create_app

        config = uvicorn.Config(
            create_app(settings),
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            log_config=None,  # the root logger's handlers: api.log (_log_api_to)
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="tdsync-api", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT_S)


def _prepare_instance() -> None:
    """Create the instance's storage once, here: the webserver and the daemon starting on a new
    DAGSTER_HOME at the same moment would both run its SQLite migrations and trip on each other."""
    import dagster as dg

    dg.DagsterInstance.get().dispose()


def _start(name: str, args: list[str], logs: Path) -> Child:
    log_path = logs / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=os.environ.copy(),
        start_new_session=True,  # its own group: Ctrl-C reaches it only through _stop
    )
    threading.Thread(
        target=copy_rotating,
        args=(process.stdout, _rotating_handler(log_path)),
        name=f"tdsync-log-{name}",
        daemon=True,
    ).start()
    return Child(name, process, log_path)


def _rotating_handler(path: Path) -> logging.handlers.RotatingFileHandler:
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def copy_rotating(stream: IO[bytes], handler: logging.Handler) -> None:
    """Copy a child's output, line by line, into a size-bounded, rotated log, until it ends."""
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            handler.emit(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
    finally:
        handler.close()


def _log_api_to(path: Path) -> logging.Handler:
    """The API's log records (uvicorn's and tdsync's, warnings and up) into a rotated api.log."""
    handler = _rotating_handler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    return handler


def _wait_until_ready(children: list[Child], api: _ApiThread, *urls: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = list(urls)
    while pending:
        _check_alive(children, api)
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"tdsync dev: not ready after {START_TIMEOUT_S:.0f} s: {', '.join(pending)}"
            )
        pending = [url for url in pending if not _answers(url)]
        if pending:
            time.sleep(0.25)


def _watch(children: list[Child], api: _ApiThread) -> None:
    while True:
        _check_alive(children, api)
        time.sleep(0.5)


def _check_alive(children: list[Child], api: _ApiThread) -> None:
    for child in children:
        code = child.process.poll()
        if code is not None:
            raise ConfigurationError(
                f"{child.name} exited with code {code}; its output is in {child.log_path}",
                {"last_lines": _tail(child.log_path)},
            )
    if not api.alive():
        raise ConfigurationError("the API server stopped; see the messages above")


def _stop(children: list[Child]) -> None:
    """SIGINT to each child's process group, as Ctrl-C would; SIGKILL to what outlives it."""
    for child in children:
        _signal_group(child.process, signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(max(0.1, deadline - time.monotonic()))
    # The group may still hold a code server or run worker the child started: wait for them
    # to follow, then kill whatever is left.
    for child in children:
        _wait_group_gone(child.process.pid, deadline)
        _signal_group(child.process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(5)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _wait_group_gone(pgid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _refuse_busy_ports(host: str, ports: dict[str, int]) -> None:
    import socket

    for what, port in ports.items():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                raise ConfigurationError(
                    f"port {port} for {what} is already in use; pick another with "
                    f"{'--port' if what == 'the API' else '--dagster-port'}",
                    {"port": port},
                ) from None


def _embedded_running(home: Path) -> bool:
    from tdsync.store.embedded import embedded_running

    return embedded_running(home)


def _tail(path: Path, lines: int = 15) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
