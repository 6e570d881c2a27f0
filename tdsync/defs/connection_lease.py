"""Shell (Dagster): the connection lease inside tdsync's jobs. The first op takes it (once it has
read the connection: tdsync.services.connections.take_connection), the last op's hook frees it.

Runs the API and CLI start already hold the lease (tdsync.defs.runs takes it under the run's id), so
taking it again costs nothing; a run launched from the Dagster UI or by the daemon takes it here
and waits, bounded, while another run of its connection is at work. A run that fails frees it
through tdsync.defs.runs (in-process runs) or the run-failure sensor (launched runs), and a run whose
process died stops renewing it, so it expires. (A job-wide failure hook would do the same at the
cost of a HOOK_SKIPPED event per op on every successful run.)
"""

from typing import Any

import dagster as dg

from tdsync.defs.resources import StoreResource, failures_as_dagster
from tdsync.defs.tags import CONNECTION_TAG
from tdsync.domain.models import DatabaseConnection, plain_json
from tdsync.services import connection_lease
from tdsync.services.connections import ConnectionRef
from tdsync.services.connections import take_connection as take


def take_connection(
    context: dg.OpExecutionContext, catalogue: StoreResource, connection: DatabaseConnection
) -> ConnectionRef:
    """The first op of both jobs, once it has read the run's connection: tag the run with it and
    take the connection's lease (waiting, bounded, for another run of it)."""
    _tag_run(context, connection.id)

    def waiting(current: dict[str, Any]) -> None:
        context.log.info(
            f"waiting for {current.get('kind') or 'a run'} {current.get('holder')} "
            "of this connection to finish"
        )

    with failures_as_dagster():
        return take(
            catalogue.get_store(),
            connection,
            holder=context.run_id,
            kind=context.job_name,
            wait_s=catalogue.settings().lease_wait_s,
            on_wait=waiting,
        )


def _tag_run(context: dg.OpExecutionContext, connection_id: str) -> None:
    # Runs launched from the UI only carry the connection in their config; tag them so that
    # run lists filter and per-connection concurrency see them like every other trigger's.
    if context.run.tags.get(CONNECTION_TAG) != connection_id:
        context.instance.add_run_tags(context.run_id, {CONNECTION_TAG: connection_id})


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
