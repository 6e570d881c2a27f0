"""Test support (deployment tests): tdsync's jobs as another process (a run worker, a Celery
worker) loads them, through Dagster's public `build_reconstructable_job`."""

from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[2]


def job_definition(name: str) -> dg.JobDefinition:
    """The job `name` of the code location (called again in each process that loads the job)."""
    from tdsync.definitions import defs

    return defs().resolve_job_def(name)


def tdsync_job(name: str):
    """One of tdsync's jobs, reconstructable in another process (`.get_definition()` here)."""
    return dg.build_reconstructable_job(
        __name__,
        job_definition.__name__,
        reconstructable_args=(name,),
        reconstructor_working_directory=str(REPO),
    )
