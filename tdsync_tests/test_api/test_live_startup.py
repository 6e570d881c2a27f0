"""Starting `tdsync api`: a configuration problem stops it at once, with a message that says why."""

from __future__ import annotations

import os
import subprocess

from tdsync_tests.test_api.live import free_port, tdsync_command


def test_a_missing_encryption_key_stops_start_up_with_a_clear_message(
    api_env: dict[str, str],
):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TDSYNC_", "DAGSTER_"))}
    env.update({k: v for k, v in api_env.items() if k != "TDSYNC_ENCRYPTION_KEY"})

    done = subprocess.run(
        [*tdsync_command(), "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode != 0
    assert "TDSYNC_ENCRYPTION_KEY" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
