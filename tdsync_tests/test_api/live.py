"""A real `tdsync api` process on a free port, and the helpers the API tests share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from tdsync.config.settings import Settings

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_env(
    mongo_uri: str, root: Path, *, key: str | None = None, db_prefix: str = "tdsync_test"
) -> dict[str, str]:
    """The variables of an isolated tdsync environment (the tdsync_env fixture's, and those of a
    server that outlives one test): its own Mongo database, key (new unless given), home and
    Dagster instance, under `root`."""
    (root / "dagster").mkdir(parents=True, exist_ok=True)
    return {
        "TDSYNC_MONGO_URI": mongo_uri,
        "TDSYNC_MONGO_DB": f"{db_prefix}_{uuid.uuid4().hex[:12]}",
        "TDSYNC_ENCRYPTION_KEY": key or Fernet.generate_key().decode(),
        "TDSYNC_HOME": str(root / "home"),
        "DAGSTER_HOME": str(root / "dagster"),
        "TDSYNC_SOURCE_TIMEOUT_S": "5",
    }


def settings_for(env: dict[str, str]) -> Settings:
    """The Settings a process started with the variables `env` reads (TDSYNC_X is field x,
    DAGSTER_HOME is dagster_home), built from them rather than from this process's environment."""
    fields = {
        name.removeprefix("TDSYNC_").lower(): value
        for name, value in env.items()
        if name.startswith("TDSYNC_")
    }
    if env.get("DAGSTER_HOME"):
        fields["dagster_home"] = env["DAGSTER_HOME"]
    return Settings(**fields)


def tdsync_command() -> list[str]:
    """`tdsync api` from this virtualenv."""
    script = Path(sys.executable).with_name("tdsync")
    if script.exists():
        return [str(script), "api"]
    return [
        sys.executable,
        "-c",
        "from tdsync.cli.main import main; raise SystemExit(main())",
        "api",
    ]


class ApiProcess:
    """A `tdsync api` server process; its output goes to a log file the tests can read."""

    def __init__(
        self, env: dict[str, str], log_path: Path, command: list[str] | None = None
    ) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        base = {k: v for k, v in os.environ.items() if not k.startswith(("TDSYNC_", "DAGSTER_"))}
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*(command or tdsync_command()), "--host", "127.0.0.1", "--port", str(self.port)],
                env={**base, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_until_serving()

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tdsync api exited at start:\n{self.log()}")
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.05)  # polling a port with a deadline: nothing to await
        self.stop()
        raise RuntimeError(f"tdsync api did not start in {START_TIMEOUT_S} s:\n{self.log()}")

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"
