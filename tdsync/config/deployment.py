"""Config layer: Which way tdsync runs on Dagster: local, production or distributed (deploy/README.md).

TDSYNC_DEPLOYMENT picks the instance configuration written into a new DAGSTER_HOME and the executor
the code location binds; the distributed executor reads its broker and queue from the environment.
"""

import os
from pathlib import Path

import dagster as dg

DEPLOYMENTS = ("local", "production", "distributed")
DEPLOYMENT_ENV = "TDSYNC_DEPLOYMENT"
BROKER_ENV = "TDSYNC_CELERY_BROKER"
QUEUE_ENV = "TDSYNC_CELERY_QUEUE"
DEFAULT_QUEUE = "dagster"
REPLY_QUEUE_EXPIRES_S = 600

_PACKAGE_DIR = Path(__file__).parents[1]  # tdsync/
DEPLOY_DIR = _PACKAGE_DIR.parent / "deploy"


def deployment() -> str:
    """The configured deployment; `local` unless TDSYNC_DEPLOYMENT says otherwise."""
    name = (os.environ.get(DEPLOYMENT_ENV) or "local").strip().lower()
    if name not in DEPLOYMENTS:
        raise ValueError(f"{DEPLOYMENT_ENV}={name!r}: expected one of {', '.join(DEPLOYMENTS)}")
    return name


def instance_config_path(name: str | None = None) -> Path:
    """The dagster.yaml a new DAGSTER_HOME starts from, for a deployment (default: the configured one)."""
    name = name or deployment()
    if name == "local":
        return _PACKAGE_DIR / "dagster.yaml"
    path = DEPLOY_DIR / name / "dagster.yaml"
    if not path.is_file():
        # Installed from a wheel, without the source tree: the operator supplies the file.
        raise FileNotFoundError(
            f"{path} not found: copy deploy/{name}/dagster.yaml from tdsync's source into DAGSTER_HOME"
        )
    return path


def executor() -> dg.ExecutorDefinition:
    """The executor for tdsync's jobs: Celery workers when distributed, else the run's own process.

    A refresh or scan is a short chain of small steps, so one process per step (Dagster's default)
    would only add start-up time; the run worker is the unit of isolation.
    """
    if deployment() != "distributed":
        return dg.in_process_executor
    from dagster_celery import celery_executor  # the `distributed` extra

    return celery_executor.configured(
        {
            # An env reference, not the value: a broker URL may hold a password.
            "broker": {"env": BROKER_ENV},
            "backend": "rpc://",
            "config_source": {
                "task_default_queue": os.environ.get(QUEUE_ENV) or DEFAULT_QUEUE,
                # Each run worker polls its own reply queue and never consumes from it, so
                # RabbitMQ only drops it after this idle time (Celery's default: a day).
                "result_expires": REPLY_QUEUE_EXPIRES_S,
            },
        },
        name="celery",
    )
