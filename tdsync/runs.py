"""Running tdsync's jobs as Dagster runs on the configured instance, for the API and the CLI.

A run executes in this process (no daemon needed) but is recorded on the instance at
DAGSTER_HOME, so it shows in the Dagster UI like a run launched there.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pydantic

from tdsync import leases
from tdsync.catalogue import shared_store
from tdsync.config import Settings, ensure_dagster_home
from tdsync.defs.refresh_job import CONNECTION_TAG, TRIGGER_TAG, refresh_table_descriptions
from tdsync.defs.resources import default_resources
from tdsync.defs.scan_job import ScanConfig, scan_table_descriptions
from tdsync.errors import TdsyncError, ValidationFailed, error_from_code
from tdsync.scan import progress as scan_progress
from tdsync.scan.progress import ProgressCallback

_instances_lock = threading.Lock()
_instances: dict[Path, dg.DagsterInstance] = {}


def instance() -> dg.DagsterInstance:
    """The instance at DAGSTER_HOME, one per process and home.

    Made once under a lock: threads that each opened a new instance on a fresh home raced to
    create its SQLite tables ("table ... already exists") and their runs failed.
    """
    with _instances_lock:
        home = ensure_dagster_home(Settings.from_env())
        found = _instances.get(home)
        if found is None:
            found = _instances[home] = _thread_safe_logging(dg.DagsterInstance.get())
        return found


def _thread_safe_logging(dagster_instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """Keep Dagster from re-running logging.config.dictConfig at the start of every run.

    Dagster calls dictConfig for each run whose instance has any dagster.yaml setting, even with no
    `python_logs` handlers configured. dictConfig closes every handler of the process while holding
    logging's module lock, which deadlocks against a run in another thread of this process (the
    API's) that is emitting an event. With no handlers configured the call adds nothing: skip it.
    """
    if not dagster_instance.get_python_log_dagster_handler_config():
        dagster_instance.get_yaml_python_handlers = list  # type: ignore[method-assign]
    return dagster_instance


def execute(
    job: dg.JobDefinition,
    *,
    db_connection_id: str,
    trigger: str,
    op_config: Mapping[str, Any],
    dagster_instance: dg.DagsterInstance | None = None,
    run_id: str | None = None,
) -> dg.ExecuteInProcessResult:
    """Run a job for one connection; a failed run raises the TdsyncError its op raised.

    The run holds the connection's lease (tdsync.leases) from before it starts until it ends,
    waiting first, bounded, for another refresh or scan of the connection to finish.
    """
    settings = Settings.from_env()
    run_id = run_id or str(uuid.uuid4())
    with leases.held(
        shared_store(settings),
        db_connection_id,
        holder=run_id,
        kind=job.name,
        wait_s=settings.lease_wait_s,
    ):
        result = job.execute_in_process(
            # The console logger is quiet (callers print their own summary and errors); every
            # event is still stored on the instance for the Dagster UI.
            run_config={
                "ops": dict(op_config),
                "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
            },
            instance=_thread_safe_logging(dagster_instance) if dagster_instance else instance(),
            resources=default_resources(),
            tags={CONNECTION_TAG: db_connection_id, TRIGGER_TAG: trigger},
            run_id=run_id,
            raise_on_error=False,
        )
        if not result.success:  # raised inside: the lease records that the run failed
            raise run_error(result)
    return result


def refresh(
    db_connection_id: str, *, trigger: str, dagster_instance: dg.DagsterInstance | None = None
) -> dict[str, int]:
    """Refresh one connection through the refresh job; returns the run's summary.

    While another refresh of the connection runs, this waits for it and returns its summary
    rather than listing the same tables again a moment later.
    """
    settings = Settings.from_env()
    run_id = str(uuid.uuid4())
    joined = leases.acquire(
        shared_store(settings),
        db_connection_id,
        holder=run_id,
        kind=refresh_table_descriptions.name,
        wait_s=settings.lease_wait_s,
        join=True,
    )
    if joined is not None:
        return joined.outcome
    result = execute(
        refresh_table_descriptions,
        db_connection_id=db_connection_id,
        trigger=trigger,
        op_config={"load_connection": {"config": {"db_connection_id": db_connection_id}}},
        dagster_instance=dagster_instance,
        run_id=run_id,
    )
    return result.output_for_node("write_statuses")


def scan(
    db_connection_id: str,
    *,
    trigger: str,
    table_names: list[str] | None = None,
    description_ids: list[str] | None = None,
    options: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    run_id: str | None = None,
    dagster_instance: dg.DagsterInstance | None = None,
) -> dict[str, Any]:
    """Scan a connection's tables through the scan job; returns the run's summary
    (tables, scanned, failed, drift, expired_leases, duration_s).

    With neither table names nor description ids, every description of the connection that is
    not DEPRECATED is scanned. `options` are the job's scan settings (ScanConfig: max_categories,
    example_rows, sample_rows, concurrency). `on_progress` gets a ScanProgress after each table,
    in this thread.
    """
    run_id = run_id or str(uuid.uuid4())
    config: dict[str, Any] = {**(options or {}), "db_connection_id": db_connection_id}
    if table_names is not None:
        config["table_names"] = list(table_names)
    if description_ids is not None:
        config["description_ids"] = list(description_ids)
    try:
        ScanConfig(**config)  # out of bounds: refused here, rather than as a failed run
    except pydantic.ValidationError as exc:
        raise ValidationFailed(
            "invalid scan options", exc.errors(include_url=False, include_context=False)
        ) from None
    with scan_progress.listening(run_id, on_progress):
        result = execute(
            scan_table_descriptions,
            db_connection_id=db_connection_id,
            trigger=trigger,
            op_config={"start_scan": {"config": config}},
            dagster_instance=dagster_instance,
            run_id=run_id,
        )
    return result.output_for_node("scan_tables")


def run_error(result: dg.ExecuteInProcessResult) -> TdsyncError:
    """The error a failed run stands for, with its run id in `detail`."""
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        user = data.user_failure_data
        if user is not None and "error_code" in user.metadata:
            detail = user.metadata.get("detail")
            detail_value = getattr(detail, "value", None) if detail is not None else None
            payload = {"run_id": result.run_id}
            if isinstance(detail_value, dict):
                payload = {**detail_value, **payload}
            return error_from_code(
                user.metadata["error_code"].value, user.description or "run failed", payload
            )
        message = data.error.message.strip().splitlines()[0] if data.error else "run failed"
        return TdsyncError(f"run failed: {message}", {"run_id": result.run_id})
    return TdsyncError("run failed", {"run_id": result.run_id})
