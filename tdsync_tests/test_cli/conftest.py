"""Running the real `tdsync` console script, as a user would, against the test environment."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

TDSYNC = str(Path(sys.executable).parent / "tdsync")


@pytest.fixture
def tdsync(tdsync_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess]:
    """Run `tdsync ARGS…` in a subprocess with the isolated test environment."""

    def run(
        *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [TDSYNC, *args],
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
