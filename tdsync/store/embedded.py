"""Store layer: the embedded default store: one SecantusDB process per TDSYNC_HOME, shared by
every tdsync process.

A file lock serialises starts and stops, and a state file (server.json) records the server's pid
and port; a live server is reused, a second one on the same folder is impossible (SecantusDB
refuses a data folder in use). A server that crashed is started again on the port it had, so
clients reconnect to the address they know; only when something else took that port does it move
(clients then re-read server.json: tdsync.store.client). A server stopped on purpose keeps its port
in server.json but is started again only by the next process that opens the store.

Everything under the store's folder is private to its user (folders 0700, files 0600): the data
holds sample rows of the source databases.
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
from collections.abc import Iterator
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tdsync.config.settings import private_dir
from tdsync.domain.errors import ConfigurationError

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
PORT_WAIT_S = 2.0
# The server process creates its data files under this umask, so files it adds later are 0600 too.
SERVER_UMASK = 0o077


def embedded_uri(home: Path) -> str:
    """The URI of this home's embedded server, started if it is not running."""
    folder = store_folder(home)
    with _locked(folder):
        state = _read_state(folder)
        if state and _running(folder, state):
            return state["uri"]
        return _start(folder, state.get("port") if state else None)


def restart_embedded(home: Path) -> str | None:
    """After a crash: this home's server started again where it was, and its URI. None when it
    was stopped on purpose (or never started): that is for the next process opening the store."""
    folder = home / "mongo"
    if not (folder / "server.json").exists():
        return None  # (and a home deleted meanwhile is not made again)
    with _locked(folder):
        state = _read_state(folder)
        if not state or not state.get("pid"):
            return None
        if _running(folder, state):
            return state["uri"]
        return _start(folder, state.get("port"))


def embedded_running(home: Path) -> bool:
    """Whether this home's embedded server is up (it is not started if not)."""
    folder = home / "mongo"
    state = _read_state(folder)
    return bool(state and state.get("pid")) and answers(state["uri"])


def stop_embedded(home: Path) -> bool:
    """Stop this home's embedded server if it runs; True if one was stopped."""
    folder = home / "mongo"
    if not folder.is_dir():
        return False
    # Under the lock: a process restarting a crashed server at this moment finishes first, and
    # the server it started is the one stopped here.
    with _locked(folder):
        state = _read_state(folder)
        if not state or not state.get("pid"):
            return False
        # Stopped on purpose: nobody restarts it after a connection failure, and the next start
        # reuses its port.
        _write_state(folder, {**state, "pid": None})
        return _terminate(state["pid"])


def store_folder(home: Path) -> Path:
    """The store's folder under `home` (server.json, server.log, the data folder), created private."""
    private_dir(home)
    folder = private_dir(home / "mongo")
    # Homes made before folders were private: tighten what is already there.
    for path in (folder, folder / "data"):
        with contextlib.suppress(OSError):
            path.chmod(0o700)
    return folder


def server_command(folder: Path, port: int) -> list[str]:
    """The SecantusDB server on `folder` (data in folder/data), listening on 127.0.0.1:`port`."""
    config = folder / "empty.toml"
    _private_file(config).close()
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


def _start(folder: Path, port: int | None) -> str:
    try:
        import secantus  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "TDSYNC_MONGO_URI is not set and the embedded store is not installed: "
            "`pip install 'tdsync[embedded]'` or point TDSYNC_MONGO_URI at a MongoDB"
        ) from None
    # The port it had, so clients reconnect by themselves; another only if that one is taken.
    if port and _port_freed(port):
        with contextlib.suppress(_PortTaken):
            return _launch(folder, port)
    return _launch(folder, _free_port())


class _PortTaken(Exception):
    """The server exited at start because its port was taken after it was checked."""


def _launch(folder: Path, port: int) -> str:
    # The child keeps its own copy of the log file; this process need not hold it open.
    with _private_file(folder / "server.log", append=True) as log:
        proc = subprocess.Popen(
            server_command(folder, port),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            umask=SERVER_UMASK,
            start_new_session=True,  # outlives the process that started it; Ctrl-C there does not kill it
        )
    uri = local_uri(port)
    # Recorded before it answers: whoever sees it answer can read which process it is.
    _write_state(folder, {"pid": proc.pid, "port": port, "uri": uri})
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if not _port_free(port):
                raise _PortTaken(port)
            raise ConfigurationError(
                f"the embedded MongoDB server exited at start (code {proc.returncode}); "
                f"see {folder / 'server.log'}"
            )
        if answers(uri):
            return uri
        time.sleep(0.1)
    proc.kill()
    raise ConfigurationError(
        f"the embedded MongoDB server did not start in {START_TIMEOUT_S:.0f} s"
    )


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with _private_file(folder / "start.lock", append=True) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _private_file(path: Path, *, append: bool = False):
    """`path` opened for writing (binary), created 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), "ab" if append else "wb")


def _read_state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "server.json").read_text())
    except (OSError, ValueError):
        return None


def _write_state(folder: Path, state: dict) -> None:
    # Written aside and renamed: a process reading it without the lock never sees half of it.
    tmp = folder / f".server.json.{os.getpid()}"
    with _private_file(tmp) as fh:
        fh.write(json.dumps(state).encode())
    tmp.replace(folder / "server.json")


def _running(folder: Path, state: dict) -> bool:
    """Whether the server of `state` is alive: its process (still SecantusDB on this folder, not
    a reused pid), or, where /proc cannot tell, its answer to a ping. A live server that is
    slow to answer is not replaced (the folder is its own until it exits)."""
    pid = state.get("pid")
    if not pid or not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return answers(state["uri"])
    return str(folder / "data").encode() in cmdline


def _terminate(pid: int) -> bool:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return False
    # A clean stop drains client connections (up to ~7 s) and checkpoints storage; give it time
    # on a loaded machine, and only then kill it (acknowledged writes are journaled).
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        while _alive(pid):
            time.sleep(0.05)
    return True


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


def _port_freed(port: int, timeout_s: float = PORT_WAIT_S) -> bool:
    """Whether `port` is free, waiting a little: a killed server's clients can see their
    connections reset an instant before its listening socket is closed."""
    deadline = time.monotonic() + timeout_s
    while not _port_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the server binds (asyncio sets SO_REUSEADDR): a port whose last server was killed
        # is free again at once, despite its connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
