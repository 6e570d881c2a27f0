"""A run launcher for tests: each launched run executes in its own process, forked from a server
that has tdsync's definitions already loaded.

Dagster's default launcher asks a code server to start a fresh Python per run, seconds each: too
much for dozens of runs on a shared two-core machine. Threads will not do either: setting up a run
reconfigures Python logging process-wide, which deadlocks runs sharing a process. The queue, its
limits and the run records stay Dagster's own; only the last hop (start the run) is swapped.
"""

import multiprocessing
import multiprocessing.forkserver
import os
import threading
from collections.abc import Mapping
from typing import Any

import dagster as dg
import dagster_postgres  # noqa: F401  (imported once in the fork server, not in every run worker)

# Dagster exports no public base for a run launcher nor a way to execute an existing run in this
# process: a custom launcher is built on these, or every run needs a process of its own (above).
from dagster._core.execution.api import execute_run
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._serdes import ConfigurableClass, ConfigurableClassData

from tdsync_tests.test_deploy.jobs import tdsync_job

# Importing this module loads the definitions once: in the fork server, every run worker forked
# from it starts with them loaded (a fresh process would spend about a second on it).
tdsync_job("refresh_table_descriptions").get_definition()

_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload([__name__])


def run_worker(instance_ref: str, run_id: str, environ: dict[str, str]) -> None:
    """What a run worker process does: its own instance, the job of the run's code origin."""
    os.environ.clear()
    os.environ.update(environ)  # the test's environment at launch, not the fork server's
    with dg.DagsterInstance.from_ref(dg.deserialize_value(instance_ref)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run.job_code_origin.repository_origin.code_pointer.module == "tdsync.definitions"
        execute_run(tdsync_job(run.job_name), run, instance)  # definitions loaded before the fork


class ForkedRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        self._watchers: list[threading.Thread] = []
        # Counted and notified whenever a run's process ends, so a driver can await a free slot.
        self.runs_ended = 0
        self.run_ended = threading.Condition()
        # Start the fork server now: it loads tdsync while the test queues its runs.
        multiprocessing.forkserver.ensure_running()
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> "ForkedRunLauncher":
        return cls(inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        run_id = context.dagster_run.run_id
        process = _FORKS.Process(
            target=run_worker,
            args=(dg.serialize_value(self._instance.get_ref()), run_id, dict(os.environ)),
            name=f"run-{run_id}",
        )
        process.start()
        watcher = threading.Thread(target=self._watch, args=(process, run_id), daemon=True)
        self._watchers.append(watcher)
        watcher.start()

    def _watch(self, process: multiprocessing.process.BaseProcess, run_id: str) -> None:
        process.join()
        run = self._instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            # The worker died without finishing its run: what run monitoring would do.
            self._instance.report_run_failed(run, f"run worker exited with {process.exitcode}")
        with self.run_ended:
            self.runs_ended += 1
            self.run_ended.notify_all()

    def join(self, timeout: float = 30) -> None:
        for watcher in self._watchers:
            watcher.join(timeout)

    def terminate(self, run_id: str) -> bool:
        return False  # the tests never cancel a run
