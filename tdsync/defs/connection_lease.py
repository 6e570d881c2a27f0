"""The connection lease inside tdsync's jobs: the first op takes it, the last op's hook frees it.

Runs the API and CLI start already hold the lease (tdsync.defs.runs takes it under the run's id), so
taking it again costs nothing; a run launched from the Dagster UI or by the daemon takes it here
and waits, bounded, while another run of its connection is at work. A run that fails frees it
through tdsync.defs.runs (in-process runs) or the run-failure sensor (launched runs), and a run whose
process died stops renewing it, so it expires. (A job-wide failure hook would do the same at the
cost of a HOOK_SKIPPED event per op on every successful run.)
"""

from typing import Any

import dagster as dg

from tdsync.defs.resources import failures_as_dagster
from tdsync.domain.models import plain_json
from tdsync.services import connection_lease
from tdsync.store import CatalogueStore


def hold_connection_lease(
    context: dg.OpExecutionContext, store: CatalogueStore, connection_id: str, *, wait_s: float
) -> None:
    """Take the connection's lease for this run (waiting for another run of it to finish)."""

    def waiting(current: dict[str, Any]) -> None:
        context.log.info(
            f"waiting for {current.get('kind') or 'a run'} {current.get('holder')} "
            "of this connection to finish"
        )

    with failures_as_dagster():
        connection_lease.acquire(
            store,
            connection_id,
            holder=context.run_id,
            kind=context.job_name,
            wait_s=wait_s,
            on_wait=waiting,
        )


@dg.success_hook(required_resource_keys={"catalogue"})
def release_connection_lease(context: dg.HookContext) -> None:
    """On the job's last op: release the lease, recording the op's result for joined callers
    (a refresh has none: joined callers read its materialization, by the run id recorded here)."""
    outcome = context.op_output_values.get("result")
    connection_lease.release(
        context.resources.catalogue.get_store(),
        context.run_id,
        succeeded=True,
        outcome=_plain(outcome) if outcome is not None else {"run_id": context.run_id},
    )


def _plain(value: Any) -> Any:
    # Stored in Mongo for joined callers: only plain JSON data makes sense there.
    try:
        return plain_json(value)
    except (TypeError, ValueError):
        return None
