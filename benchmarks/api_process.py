"""A `tdsync api` process for the HTTP benchmarks: a fresh home for it, started on a free port,
and its CPU time."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def fresh_home(prefix: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A new TDSYNC_HOME and DAGSTER_HOME, as a new user gets them: no TDSYNC_ or DAGSTER_
    variable of this shell applies, and no TDSYNC_MONGO_URI, so the home's embedded SecantusDB
    is the store. Its server is stopped and the folder removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    for key in [k for k in os.environ if k.startswith(("TDSYNC_", "DAGSTER_"))]:
        del os.environ[key]
    (root / "dagster").mkdir()
    env = {"TDSYNC_HOME": str(root / "home"), "DAGSTER_HOME": str(root / "dagster")}
    try:
        yield root, env
    finally:
        from tdsync.store.embedded import stop_embedded

        stop_embedded(Path(env["TDSYNC_HOME"]))
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_api(env: dict[str, str], log_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """`tdsync api` for the block; yields the process and its base URL."""
    api, url = start_api(env, log_path)
    try:
        yield api, url
    finally:
        api.terminate()
        api.wait(timeout=30)


def start_api(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tdsync = Path(sys.executable).with_name("tdsync")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(tdsync), "api", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tdsync api exited:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=10).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling a port with a deadline
    proc.kill()
    raise RuntimeError("tdsync api did not become healthy in 120 s")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (Linux /proc; 10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
