"""The embedded default store: one SecantusDB process per TDSYNC_HOME, shared by every tdsync process.

A file lock serialises start-up, a state file records the port, and a live server is reused; a
second server on the same folder is impossible (SecantusDB refuses a data folder in use).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tdsync.errors import ConfigurationError

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def embedded_uri(home: Path) -> str:
    """The URI of this home's embedded server, started if it is not running."""
    folder = home / "mongo"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _read_state(folder)
        if state and answers(state["uri"]):
            return state["uri"]
        return _start(folder)


def embedded_running(home: Path) -> bool:
    """Whether this home's embedded server is up (it is not started if not)."""
    state = _read_state(home / "mongo")
    return bool(state) and answers(state["uri"])


def stop_embedded(home: Path) -> bool:
    """Stop this home's embedded server if it runs; True if one was stopped."""
    folder = home / "mongo"
    state = _read_state(folder)
    if not state:
        return False
    try:
        os.kill(state["pid"], 15)
    except ProcessLookupError:
        return False
    # A clean stop drains client connections (up to ~7 s) and checkpoints storage; give it time
    # on a loaded machine, and only then kill it (acknowledged writes are journaled).
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(state["pid"]):
        time.sleep(0.05)
    if _alive(state["pid"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state["pid"], 9)
        while _alive(state["pid"]):
            time.sleep(0.05)
    (folder / "server.json").unlink(missing_ok=True)
    return True


def server_command(folder: Path, port: int) -> list[str]:
    """The SecantusDB server on `folder` (data in folder/data), listening on 127.0.0.1:`port`."""
    config = folder / "empty.toml"
    config.touch()
    return [
        sys.executable,
        "-m",
        "secantus",
        "--standalone",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(folder / "data"),
        # An explicit empty config: otherwise it reads ./secantusd.toml or ~/.secantus/.
        "--config",
        str(config),
        "--log-level",
        "WARNING",
    ]


def local_uri(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?retryWrites=false"


def answers(uri: str, *, timeout_ms: int = 500) -> bool:
    """Whether a MongoDB server answers a ping at `uri` now."""
    client = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _start(folder: Path) -> str:
    try:
        import secantus  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "TDSYNC_MONGO_URI is not set and the embedded store is not installed: "
            "`pip install 'tdsync[embedded]'` or point TDSYNC_MONGO_URI at a MongoDB"
        ) from None
    port = _free_port()
    # The child keeps its own copy of the log file; this process need not hold it open.
    with open(folder / "server.log", "ab") as log:
        proc = subprocess.Popen(
            server_command(folder, port),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the process that started it; Ctrl-C there does not kill it
        )
    uri = local_uri(port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigurationError(
                f"the embedded MongoDB server exited at start (code {proc.returncode}); "
                f"see {folder / 'server.log'}"
            )
        if answers(uri):
            (folder / "server.json").write_text(json.dumps({"pid": proc.pid, "uri": uri}))
            return uri
        time.sleep(0.1)
    proc.kill()
    raise ConfigurationError(
        f"the embedded MongoDB server did not start in {START_TIMEOUT_S:.0f} s"
    )


def _read_state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "server.json").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        # When this process started the server, it is our child: reap it, or its zombie would
        # look alive below until we exit.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        # A zombie (exited, waiting for a parent that may be slow to reap it) is dead already.
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
