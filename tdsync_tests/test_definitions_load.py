"""The code location loads the way `dagster definitions validate -w workspace.yaml` and
`dg check defs` load it, with no deprecation warning (integration tier: they start the CLIs).
What it holds is test_definitions.py's snapshot."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_dagster_definitions_validate_passes(tdsync_env: dict[str, str]) -> None:
    dagster_cli = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster_cli), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env={**os.environ, **tdsync_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    # workspace.yaml's one code location, by the name runs record and the UI re-executes by.
    assert "Validation successful for code location tdsync.definitions." in (
        result.stdout + result.stderr
    )
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_dg_check_defs_passes_and_loading_warns_of_nothing_deprecated(
    tdsync_env: dict[str, str],
) -> None:
    dg_cli = Path(sys.executable).with_name("dg")
    result = subprocess.run(
        [str(dg_cli), "check", "defs"],
        cwd=REPO_ROOT,
        env={**os.environ, **tdsync_env, "VIRTUAL_ENV": str(Path(sys.executable).parents[1])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "All definitions loaded successfully" in result.stdout + result.stderr

    loaded = subprocess.run(
        [
            sys.executable,
            *("-W", "error::DeprecationWarning:dagster"),
            *("-W", "error::dagster.SupersessionWarning"),
            *("-c", "import tdsync.definitions as d; d.defs().get_repository_def()"),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **tdsync_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr[-4000:]
