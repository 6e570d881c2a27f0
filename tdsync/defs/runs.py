"""Shell (Dagster): running tdsync's jobs for the API and the CLI; every run is created from the
code location.

A run is made as `dagster job launch` makes one (the code location's job, its snapshot and its
origin), so the Dagster UI can re-execute it, open it in the Launchpad and filter it like a run
launched there. In `local` it then executes in this process (no daemon needed, and a refresh
answers in a fraction of a second); in `production` and `distributed` it is submitted to the
instance, whose run queue, launcher and executor run it, and this process waits for it to end.

`settings` are the caller's (built once by its entry point): they choose
the instance, the store and the lease wait here. The run's own resources are the code location's,
bound to the same environment (tdsync.defs.resources), as in any process that loads it.
DagsterRunStarter is how the services (registering a connection, requesting a scan) start runs.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pydantic
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import InProcessCodeLocation
from dagster._core.storage.defs_state.base import set_defs_state_storage
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

from tdsync.config.deployment import deployment
from tdsync.config.settings import Settings, ensure_dagster_home
from tdsync.defs.assets import TABLE_DESCRIPTIONS
from tdsync.defs.partitions import ensure_partition, partition_key
from tdsync.defs.refresh_job import (
    SUMMARY_FIELDS,
    refresh_run_config,
    refresh_table_descriptions,
)
from tdsync.defs.scan_job import ScanConfig, scan_table_descriptions
from tdsync.defs.scan_process import start_detached_scan
from tdsync.defs.tags import CONNECTION_TAG, TRIGGER_TAG
from tdsync.domain.errors import ConnectionBusy, TdsyncError, ValidationFailed, error_from_code
from tdsync.domain.models import Status
from tdsync.services import connection_lease, scan_progress
from tdsync.services.run_starter import RunNotStarted
from tdsync.services.scan_progress import ProgressCallback
from tdsync.store import CatalogueStore
from tdsync.store.client import shared_store

# The name workspace.yaml's python_module gives the code location in the webserver and daemon:
# the UI finds a run's code location by it when it re-executes the run.
LOCATION_NAME = "tdsync.definitions"
REPOSITORY_NAME = "__repository__"
WAIT_POLL_S = 0.1

_instances_lock = threading.Lock()
_instances: dict[Path, dg.DagsterInstance] = {}
# Per instance, dropped with it (a location holds its instance by a weak reference).
_locations: weakref.WeakKeyDictionary[dg.DagsterInstance, InProcessCodeLocation] = (
    weakref.WeakKeyDictionary()
)


def instance(settings: Settings) -> dg.DagsterInstance:
    """The instance at the settings' DAGSTER_HOME, one per process and home.

    Made once under a lock: threads that each opened a new instance on a fresh home raced to
    create its SQLite tables ("table ... already exists") and their runs failed.
    """
    with _instances_lock:
        home = ensure_dagster_home(settings)
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


def code_location(dagster_instance: dg.DagsterInstance) -> InProcessCodeLocation:
    """tdsync.definitions loaded in this process as the code location the webserver serves."""
    with _instances_lock:
        found = _locations.get(dagster_instance)
        if found is None:
            origin = InProcessCodeLocationOrigin(
                LoadableTargetOrigin(module_name=LOCATION_NAME), location_name=LOCATION_NAME
            )
            # Loading reads the defs state of the current instance: make it this one, whatever
            # an instance entered elsewhere in the process left current.
            with set_defs_state_storage(dagster_instance.defs_state_storage):
                found = _locations[dagster_instance] = origin.create_location(dagster_instance)
        return found


def create_run(
    job_name: str,
    *,
    dagster_instance: dg.DagsterInstance,
    tags: Mapping[str, str],
    run_config: Mapping[str, Any] | None = None,
    partition: str | None = None,
    run_id: str | None = None,
) -> dg.DagsterRun:
    """A run of the code location's job, as `dagster job launch` creates it (not started)."""
    location = code_location(dagster_instance)
    remote_job = location.get_repository(REPOSITORY_NAME).get_full_job(job_name)
    run_config = dict(run_config or {})
    plan = location.get_execution_plan(
        remote_job, run_config, step_keys_to_execute=None, known_state=None
    ).execution_plan_snapshot
    run_tags = {**remote_job.tags, **tags}
    if partition is not None:
        ensure_partition(dagster_instance, partition)
        run_tags["dagster/partition"] = partition
    return dagster_instance.create_run(
        job_name=job_name,
        run_id=run_id,
        run_config=run_config,
        resolved_op_selection=None,
        step_keys_to_execute=plan.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags=run_tags,
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=location.get_repository(REPOSITORY_NAME).asset_graph,
    )


def execute(
    job_name: str,
    *,
    db_connection_id: str,
    trigger: str,
    run_config: Mapping[str, Any] | None = None,
    partition: str | None = None,
    dagster_instance: dg.DagsterInstance | None = None,
    run_id: str | None = None,
    settings: Settings,
) -> dg.DagsterRun:
    """Run a job for one connection and wait for it; a failed run raises the TdsyncError it
    stands for.

    In `local` the run executes in this process, where the instance's run queue cannot see it:
    it holds the connection's lease (tdsync.services.connection_lease) from before it starts until it ends, waiting
    first, bounded, for another refresh or scan of the connection. Elsewhere the run is queued
    like any other (one run per connection) and takes the lease in its first op.
    """
    dagster_instance = (
        _thread_safe_logging(dagster_instance) if dagster_instance else instance(settings)
    )
    run_id = run_id or str(uuid.uuid4())
    tags = {CONNECTION_TAG: db_connection_id, TRIGGER_TAG: trigger}

    def new_run() -> dg.DagsterRun:
        return create_run(
            job_name,
            dagster_instance=dagster_instance,
            tags=tags,
            run_config=run_config,
            partition=partition,
            run_id=run_id,
        )

    if deployment() != "local":
        run = new_run()
        submit(dagster_instance, run)
        return _ended(dagster_instance, run_id, queued_for_s=settings.lease_wait_s)
    with connection_lease.held(
        shared_store(settings),
        db_connection_id,
        holder=run_id,
        kind=job_name,
        wait_s=settings.lease_wait_s,
    ):
        run = new_run()
        location = code_location(dagster_instance)
        execute_run(
            location.get_reconstructable_job(REPOSITORY_NAME, job_name), run, dagster_instance
        )
        ended = dagster_instance.get_run_by_id(run_id)
        if ended is None or ended.status != dg.DagsterRunStatus.SUCCESS:
            raise run_error(dagster_instance, run_id)  # inside: the lease records the failure
    return ended


def submit(dagster_instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Hand the run to the instance's run coordinator: its queue (one run per connection, the
    global cap), then the daemon's run launcher and the job's executor run it."""
    with workspace_request(dagster_instance) as request:
        dagster_instance.submit_run(run.run_id, request)


@contextlib.contextmanager
def workspace_request(dagster_instance: dg.DagsterInstance) -> Iterator[Any]:
    """A request context of the workspace the webserver serves (this code location), as the UI's
    GraphQL and the run coordinator see it."""
    location = code_location(dagster_instance)
    # The workspace loads the location again, reading the defs state of the current instance.
    with (
        set_defs_state_storage(dagster_instance.defs_state_storage),
        WorkspaceProcessContext(
            dagster_instance, InProcessWorkspaceLoadTarget(location.origin)
        ) as workspace,
    ):
        yield workspace.create_request_context()


def _ended(
    dagster_instance: dg.DagsterInstance, run_id: str, *, queued_for_s: float, own: bool = True
) -> dg.DagsterRun:
    """The run once it has ended successfully, or the error it failed with.

    Another process runs it and Dagster offers no notification, so its record is polled. A run
    still queued after `queued_for_s` (another run of its connection is ahead of it, or no
    dagster-daemon dequeues) is connection_busy, as when a lease stays taken; this caller's
    `own` run is then cancelled (another caller's run it joined is left to that caller).
    """
    queued_until = time.monotonic() + queued_for_s
    while True:
        current = dagster_instance.get_run_by_id(run_id)
        if current is None or current.is_finished:
            break
        if current.status == dg.DagsterRunStatus.QUEUED and time.monotonic() > queued_until:
            if own:
                dagster_instance.run_coordinator.cancel_run(run_id)
            raise ConnectionBusy(
                f"run {run_id} was still queued after {queued_for_s:.0f} s (another run of the "
                "connection is ahead of it, or no dagster-daemon is dequeuing runs)",
                {"run_id": run_id},
            )
        time.sleep(WAIT_POLL_S)
    if current is None or current.status != dg.DagsterRunStatus.SUCCESS:
        raise run_error(dagster_instance, run_id)
    return current


def _refresh_in_flight(dagster_instance: dg.DagsterInstance, connection_id: str) -> str | None:
    """The id of a refresh run of the connection that is queued or running, if any."""
    in_flight = dagster_instance.get_run_ids(
        dg.RunsFilter(
            job_name=refresh_table_descriptions.name,
            tags={CONNECTION_TAG: connection_id},
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ],
        ),
        limit=1,
    )
    return in_flight[0] if in_flight else None


def refresh(
    db_connection_id: str,
    *,
    trigger: str,
    allow_empty_schemas: list[str] | None = None,
    dagster_instance: dg.DagsterInstance | None = None,
    run_id: str | None = None,
    settings: Settings,
) -> dict[str, Any]:
    """Refresh one connection: materialize its `table_descriptions` partition; returns the
    refresh's summary (what it added, deprecated, restored, ..., the counts by status after it
    and the names of what changed, at most 50 of each kind). `run_id` names the run it starts.

    While another refresh of the connection runs (or is queued), this waits for it and returns its
    summary rather than listing the same tables again a moment later; unless schemas are confirmed
    empty (`allow_empty_schemas`), which only a refresh of its own can honour.
    """
    store = shared_store(settings)
    dagster_instance = dagster_instance or instance(settings)
    run_id = run_id or str(uuid.uuid4())
    if deployment() != "local":
        # The instance's run records say whether a refresh of the connection is in flight.
        running = (
            None if allow_empty_schemas else _refresh_in_flight(dagster_instance, db_connection_id)
        )
        if running is not None:
            with contextlib.suppress(TdsyncError):  # it failed: refresh here
                _ended(dagster_instance, running, queued_for_s=settings.lease_wait_s, own=False)
                return refresh_summary(dagster_instance, running)
    else:
        # In-process runs are joined through the connection lease they hold.
        joined = connection_lease.acquire(
            store,
            db_connection_id,
            holder=run_id,
            kind=refresh_table_descriptions.name,
            wait_s=settings.lease_wait_s,
            join=not allow_empty_schemas,
        )
        if joined is not None:
            return refresh_summary(dagster_instance, joined.run_id)
    execute(
        refresh_table_descriptions.name,
        db_connection_id=db_connection_id,
        trigger=trigger,
        run_config=refresh_run_config(allow_empty_schemas),
        partition=partition_key(store.get_connection(db_connection_id)),
        dagster_instance=dagster_instance,
        run_id=run_id,
        settings=settings,
    )
    return refresh_summary(dagster_instance, run_id)


# Beside the summary's counts: the counts by status after the refresh, and what changed by name.
REPORT_FIELDS = (
    *SUMMARY_FIELDS,
    *(status.value for status in Status),
    "total",
    "added_tables",
    "deprecated_tables",
    "restored_tables",
)


def refresh_summary(dagster_instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """A refresh run's summary, from the materialization it recorded."""
    for record in dagster_instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records:
        materialization = record.asset_materialization
        if materialization is not None and materialization.asset_key == TABLE_DESCRIPTIONS:
            metadata = materialization.metadata
            return {k: metadata[k].value for k in REPORT_FIELDS if k in metadata}
    return {}


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
    settings: Settings,
) -> dict[str, Any]:
    """Scan a connection's tables through the scan job; returns the run's summary
    (tables, scanned, failed, drift, expired_leases, duration_s).

    With neither table names nor description ids, every description of the connection that is
    not DEPRECATED is scanned. `options` are the job's scan settings (ScanConfig: max_categories,
    example_rows, sample_rows, concurrency). `on_progress` gets a ScanProgress after each table,
    in this thread.
    """
    dagster_instance = dagster_instance or instance(settings)
    run_id = run_id or str(uuid.uuid4())
    config = scan_config(db_connection_id, table_names, description_ids, options)
    with scan_progress.listening(run_id, on_progress):
        execute(
            scan_table_descriptions.name,
            db_connection_id=db_connection_id,
            trigger=trigger,
            run_config=config,
            dagster_instance=dagster_instance,
            run_id=run_id,
            settings=settings,
        )
    return _output_metadata(dagster_instance, run_id, "scan_tables")


def scan_config(
    db_connection_id: str,
    table_names: list[str] | None = None,
    description_ids: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The scan job's run config for a request; out-of-bounds options are refused here with
    validation_error, rather than as a failed run."""
    config: dict[str, Any] = {**(options or {}), "db_connection_id": db_connection_id}
    if table_names is not None:
        config["table_names"] = list(table_names)
    if description_ids is not None:
        config["description_ids"] = list(description_ids)
    try:
        ScanConfig(**config)
    except pydantic.ValidationError as exc:
        raise ValidationFailed(
            "invalid scan options", exc.errors(include_url=False, include_context=False)
        ) from None
    return {"ops": {"start_scan": {"config": config}}}


def submit_scan(
    db_connection_id: str,
    *,
    trigger: str,
    run_id: str,
    table_names: list[str] | None = None,
    description_ids: list[str] | None = None,
    dagster_instance: dg.DagsterInstance | None = None,
    settings: Settings,
) -> dg.DagsterRun:
    """Queue a scan run on the instance and return at once (`production`, `distributed`): the
    daemon launches it, its first op takes the connection's lease, run monitoring watches it and
    the run-failure sensor settles its rows if it fails."""
    dagster_instance = dagster_instance or instance(settings)
    run = create_run(
        scan_table_descriptions.name,
        dagster_instance=dagster_instance,
        tags={CONNECTION_TAG: db_connection_id, TRIGGER_TAG: trigger},
        run_config=scan_config(db_connection_id, table_names, description_ids),
        run_id=run_id,
    )
    submit(dagster_instance, run)
    return run


def _output_metadata(dagster_instance: dg.DagsterInstance, run_id: str, step: str) -> dict:
    for record in dagster_instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_OUTPUT
    ).records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.step_key == step:
            return {
                k: v.value
                for k, v in event.step_output_data.metadata.items()
                if isinstance(v.value, int | float | str | bool)
            }
    return {}


def run_error(dagster_instance: dg.DagsterInstance, run_id: str) -> TdsyncError:
    """The error a failed run stands for, with its run id in `detail`."""
    for record in dagster_instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_FAILURE
    ).records:
        data = record.event_log_entry.dagster_event.step_failure_data
        user = data.user_failure_data
        if user is not None and "error_code" in user.metadata:
            detail = user.metadata.get("detail")
            detail_value = getattr(detail, "value", None) if detail is not None else None
            payload = {"run_id": run_id}
            if isinstance(detail_value, dict):
                payload = {**detail_value, **payload}
            return error_from_code(
                user.metadata["error_code"].value, user.description or "run failed", payload
            )
        message = data.error.message.strip().splitlines()[0] if data.error else "run failed"
        return TdsyncError(f"run failed: {message}", {"run_id": run_id})
    run = dagster_instance.get_run_by_id(run_id)
    status = run.status.value.lower() if run else "lost"
    return TdsyncError(f"run {status}", {"run_id": run_id})


@dataclass(frozen=True)
class DagsterRunStarter:
    """The services' RunStarter (tdsync.services.run_starter): runs tagged with `trigger`."""

    store: CatalogueStore
    settings: Settings
    trigger: str

    def refresh(self, connection_id: str) -> dict[str, Any]:
        # Joins a refresh of the connection already running rather than repeating it.
        return refresh(connection_id, trigger=self.trigger, settings=self.settings)

    def start_scan(
        self,
        connection_id: str,
        *,
        run_id: str,
        table_names: list[str] | None,
        description_ids: list[str] | None,
    ) -> None:
        asked = {"table_names": table_names, "description_ids": description_ids}
        try:
            if deployment() == "local":
                start_detached_scan(
                    self.store, self.settings, connection_id=connection_id, run_id=run_id, **asked
                )
            else:
                # The instance's queue, launcher and run monitoring take it from here; the
                # run-failure sensor settles its rows if it fails before scanning them.
                submit_scan(
                    connection_id,
                    trigger=self.trigger,
                    run_id=run_id,
                    settings=self.settings,
                    **asked,
                )
        except (OSError, dg.DagsterError) as exc:
            raise RunNotStarted(getattr(exc, "strerror", None) or str(exc)) from exc
