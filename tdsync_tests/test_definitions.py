"""The code location loads the way `dagster definitions validate -w workspace.yaml` loads it."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._cli.workspace.cli_target import WorkspaceOpts, get_workspace_from_cli_opts

import tdsync.definitions
from tdsync.defs.resources import CatalogueResource, SourceDatabasesResource

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_workspace_loads_the_refresh_job_as_the_partitioned_asset_and_its_checks(
    tdsync_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)  # workspace.yaml's working_directory is "."
    with (
        dg.instance_for_test() as instance,
        get_workspace_from_cli_opts(
            instance=instance,
            version=dg.__version__,
            workspace_opts=WorkspaceOpts(workspace=["workspace.yaml"]),
            allow_in_process=True,  # what `definitions validate` does without --load-with-grpc
            log_level="warning",
        ) as workspace,
    ):
        entries = workspace.get_code_location_entries()
        assert list(entries) == ["tdsync.definitions"]
        assert entries["tdsync.definitions"].load_error is None
        location = workspace.get_code_location("tdsync.definitions")
        (repo,) = location.get_repositories().values()
        job = repo.get_full_job("refresh_table_descriptions")
        assert job.tags["tdsync/trigger"] == "ui"
        assert [
            node.node_name for node in job.job_snapshot.dep_structure_snapshot.node_invocation_snaps
        ] == ["table_description_checks", "table_descriptions"]
        (asset,) = [
            node
            for node in repo.get_asset_node_snaps()
            if node.asset_key.to_user_string() == "table_descriptions"
        ]
        assert asset.partitions is not None  # one partition per connection: no config to type
        config = job.job_snapshot.config_schema_snapshot
        assert "db_connection_id" not in str(config.all_config_snaps_by_key)


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


def test_resources_show_where_their_settings_come_from(tdsync_env: dict[str, str]) -> None:
    resources = tdsync.definitions.defs().resources
    catalogue = resources["catalogue"]
    # Bound to the variables, not to their values: the UI never shows the key or the URI.
    assert catalogue.encryption_key == dg.EnvVar("TDSYNC_ENCRYPTION_KEY")
    assert catalogue.mongo_uri == dg.EnvVar("TDSYNC_MONGO_URI")
    # Read when a run starts.
    with dg.build_resources({"catalogue": catalogue}) as started:
        assert started.catalogue.settings().mongo_db == tdsync_env["TDSYNC_MONGO_DB"]
    # Set as fields, a test or an operator needs no environment variable.
    assert SourceDatabasesResource(timeout_s=1.5)._timeout_s() == 1.5
    assert CatalogueResource(lease_wait_s=2).settings().lease_wait_s == 2
