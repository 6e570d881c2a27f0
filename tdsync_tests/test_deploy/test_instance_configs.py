"""TDSYNC_DEPLOYMENT picks the Dagster instance and executor; the shipped configurations load and
say what deploy/README.md promises (PostgreSQL storage, run limits, monitoring, retries)."""

from pathlib import Path

import pytest
import yaml

from tdsync.config.deployment import DEPLOY_DIR, instance_config_path
from tdsync.config.settings import Settings, ensure_dagster_home
from tdsync.defs.tags import CONNECTION_TAG
from tdsync_tests.test_deploy.conftest import instance_on

PER_CONNECTION_LIMIT = {
    "key": CONNECTION_TAG,
    "value": {"applyLimitPerUniqueValue": True},
    "limit": 1,
}


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    ("deployment", "source"),
    [
        (None, Path("tdsync/dagster.yaml")),
        ("local", Path("tdsync/dagster.yaml")),
        ("production", Path("deploy/production/dagster.yaml")),
        ("Distributed", Path("deploy/distributed/dagster.yaml")),
    ],
)
def test_new_dagster_home_starts_from_the_configuration_tdsync_deployment_names(
    deployment: str | None, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if deployment is None:
        monkeypatch.delenv("TDSYNC_DEPLOYMENT", raising=False)
    else:
        monkeypatch.setenv("TDSYNC_DEPLOYMENT", deployment)
    monkeypatch.setenv("DAGSTER_HOME", "")  # ensure_dagster_home exports it: restored after

    home = ensure_dagster_home(Settings(home=tmp_path, dagster_home=tmp_path / "dagster"))

    assert (home / "dagster.yaml").read_text() == (DEPLOY_DIR.parent / source).read_text()


def test_an_existing_dagster_yaml_is_kept_whatever_the_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", "")  # ensure_dagster_home exports it: restored after
    monkeypatch.setenv("TDSYNC_DEPLOYMENT", "production")

    ensure_dagster_home(Settings(home=tmp_path, dagster_home=tmp_path))

    assert (tmp_path / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_unknown_deployment_is_refused_naming_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TDSYNC_DEPLOYMENT", "cluster")

    with pytest.raises(ValueError, match="local, production, distributed"):
        instance_config_path()


def test_distributed_instance_is_the_production_one_plus_a_shared_artifact_directory() -> None:
    production = _yaml(DEPLOY_DIR / "production" / "dagster.yaml")
    distributed = _yaml(DEPLOY_DIR / "distributed" / "dagster.yaml")

    shared = distributed.pop("local_artifact_storage")

    assert distributed == production
    assert shared["config"]["base_dir"] == {"env": "TDSYNC_SHARED_STORAGE_DIR"}


def test_production_instance_keeps_runs_on_postgres_one_per_connection_under_a_global_cap(
    dagster_pg: str, tmp_path: Path
) -> None:
    with instance_on("production", tmp_path / "dagster") as instance:
        queue = instance.get_concurrency_config().run_queue_config

        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert queue.max_concurrent_runs == 10
        assert queue.tag_concurrency_limits == [PER_CONNECTION_LIMIT]
        assert instance.run_monitoring_enabled
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure


def test_distributed_instance_hands_step_outputs_over_through_the_shared_directory(
    dagster_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDSYNC_SHARED_STORAGE_DIR", str(tmp_path / "shared"))

    with instance_on("distributed", tmp_path / "dagster") as instance:
        assert Path(instance.storage_directory()).is_relative_to(tmp_path / "shared")
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"


@pytest.mark.parametrize(
    ("deployment", "executor"),
    [("local", "in_process"), ("production", "in_process"), ("distributed", "celery")],
)
def test_jobs_run_on_the_executor_of_the_deployment(
    deployment: str, executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDSYNC_DEPLOYMENT", deployment)
    from tdsync.definitions import defs

    job = defs().resolve_job_def("refresh_table_descriptions")

    assert job.executor_def.name == executor


def test_kubernetes_values_apply_the_production_limits_and_hold_no_secret() -> None:
    values = _yaml(DEPLOY_DIR / "kubernetes" / "values.yaml")
    production = _yaml(DEPLOY_DIR / "production" / "dagster.yaml")
    daemon = values["dagsterDaemon"]
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    [code_location] = values["dagster-user-deployments"]["deployments"]

    assert queue["tagConcurrencyLimits"] == [PER_CONNECTION_LIMIT]
    assert (
        queue["maxConcurrentRuns"] == production["run_coordinator"]["config"]["max_concurrent_runs"]
    )
    assert daemon["runRetries"] == {
        "enabled": True,
        "maxRetries": production["run_retries"]["max_retries"],
        "retryOnAssetOrOpFailure": False,
    }
    assert daemon["runMonitoring"]["enabled"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert {"name": "TDSYNC_DEPLOYMENT", "value": "production"} in code_location["env"]
    assert code_location["envSecrets"] == [{"name": "tdsync-secrets"}]
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert not values["generatePostgresqlPasswordSecret"]


def test_kubernetes_values_keep_the_unauthenticated_webserver_private_and_say_why() -> None:
    text = (DEPLOY_DIR / "kubernetes" / "values.yaml").read_text()
    values = _yaml(DEPLOY_DIR / "kubernetes" / "values.yaml")

    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert values["ingress"]["enabled"] is False
    assert "has no authentication" in text
