"""Fixtures for the deployment tests: Dagster storage on a throwaway PostgreSQL database, RabbitMQ."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository

from tdsync.deployment import DEPLOY_DIR
from tdsync_tests.conftest import IN_CI, PG_ADMIN_URL, _server_database, unavailable

REPO = Path(__file__).resolve().parents[2]
AMQP_URL = os.environ.get("TDSYNC_TEST_AMQP_URL", "pyamqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def dagster_pg(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway PostgreSQL database for Dagster's storage, exported as the DAGSTER_PG_* variables
    that deploy/production/dagster.yaml reads. Yields the database name."""
    for url in _server_database(PG_ADMIN_URL, "PostgreSQL at 127.0.0.1:5432"):
        parsed = sa.make_url(url)
        env = {
            "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(parsed.port or 5432),
            "DAGSTER_PG_DB": parsed.database,
            "DAGSTER_PG_USERNAME": parsed.username or "postgres",
            "DAGSTER_PG_PASSWORD": parsed.password or "",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield parsed.database


@pytest.fixture
def amqp_url() -> str:
    """The RabbitMQ broker the Celery tests use; unreachable means skip (fail under CI=true)."""
    from kombu import Connection

    try:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            # .ci/run starts RabbitMQ without waiting for it: under CI give it half a minute.
            conn.ensure_connection(
                max_retries=30 if IN_CI else 1, interval_start=1, interval_step=0, interval_max=1
            )
    except Exception as exc:
        unavailable(
            f"RabbitMQ (TDSYNC_TEST_AMQP_URL, default 127.0.0.1:5672) is unreachable: {exc}"
        )
    return AMQP_URL


def instance_on(
    deployment: str,
    dagster_home: Path,
    *,
    run_queue: dict | None = None,
    run_launcher: dict | None = None,
) -> dg.DagsterInstance:
    """A DagsterInstance on deploy/<deployment>/dagster.yaml, with run-queue settings or the run
    launcher swapped for the test."""
    config = yaml.safe_load((DEPLOY_DIR / deployment / "dagster.yaml").read_text())
    config["run_coordinator"]["config"].update(run_queue or {})
    if run_launcher:
        config["run_launcher"] = run_launcher
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return dg.DagsterInstance.from_config(str(dagster_home))


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def tdsync_job(name: str) -> ReconstructableJob:
    """One of tdsync's jobs as another process (a run worker, a Celery worker) loads it."""
    return ReconstructableRepository.for_module(
        "tdsync.definitions", "defs", working_directory=str(REPO)
    ).get_reconstructable_job(name)
