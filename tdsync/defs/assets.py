"""Shell (Dagster): The health checks of the `table_descriptions` asset (tdsync.defs.refresh_job computes it).

Both checks run after every materialization, in the same run, on that run's connection; executed
on their own (the UI's "Execute" on a check) they judge every connection. The
`check_table_descriptions` sensor also reports them when their outcome changes between runs (a
scan failing, a lease running out).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg

from tdsync.defs.partitions import connection_for_partition
from tdsync.defs.resources import StoreResource, failures_as_dagster
from tdsync.domain.models import DatabaseConnection, Status, utcnow
from tdsync.store import CatalogueStore

TABLE_DESCRIPTIONS = dg.AssetKey("table_descriptions")
NO_FAILED = "no_failed_descriptions"
NO_STUCK_SCANS = "no_scan_past_its_lease"


def status_metadata(counts: Mapping[str, int]) -> dict[str, int]:
    """Every status, zero included, so the UI can plot each one over time."""
    metadata = {status.value: int(counts.get(status.value, 0)) for status in Status}
    metadata["total"] = sum(metadata.values())
    return metadata


@dataclass(frozen=True)
class CheckOutcome:
    """A check's verdict in plain data, turned into a Dagster result or a reported evaluation."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any]
    severity: dg.AssetCheckSeverity

    def to_result(self) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            check_name=self.name,
            passed=self.passed,
            description=self.description,
            metadata=self.metadata,
            severity=self.severity,
        )

    def to_evaluation(self) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(
            asset_key=TABLE_DESCRIPTIONS,
            check_name=self.name,
            passed=self.passed,
            description=self.description,
            metadata=self.metadata,
            severity=self.severity,
        )


def catalogue_checks(
    store: CatalogueStore, now: datetime, connections: list[DatabaseConnection] | None = None
) -> list[CheckOutcome]:
    """No description is FAILED; none is SYNCHRONIZING past its scan lease, in `connections`
    (default: all). Per connection, the counts come from the (connection, status) index, so
    checking after every refresh stays cheap."""
    failed: dict[str, dict[str, str]] = {}
    stuck: dict[str, list[str]] = {}
    failed_total = 0
    for conn in store.list_connections() if connections is None else connections:
        count = store.descriptions_with_status(conn.id, Status.FAILED)
        if count:
            failed_total += count
            failed[conn.alias] = store.failed_descriptions(conn.id)
        past_lease = store.scans_past_lease(conn.id, now)
        if past_lease:
            stuck[conn.alias] = past_lease
    stuck_total = sum(len(names) for names in stuck.values())
    return [
        CheckOutcome(
            NO_FAILED,
            passed=not failed,
            description=(
                f"{failed_total} table description(s) FAILED in {', '.join(failed)}; "
                "their error_message says why"
                if failed
                else "no table description is FAILED"
            ),
            metadata={"failed": failed_total, "errors": dg.MetadataValue.json(failed)},
            severity=dg.AssetCheckSeverity.WARN,
        ),
        CheckOutcome(
            NO_STUCK_SCANS,
            passed=not stuck,
            description=(
                f"{stuck_total} table description(s) SYNCHRONIZING past their scan lease in "
                f"{', '.join(stuck)}: their scan stopped without finishing"
                if stuck
                else "no scan is past its lease"
            ),
            metadata={
                "past_lease": stuck_total,
                "tables": dg.MetadataValue.json({a: names[:50] for a, names in stuck.items()}),
            },
            severity=dg.AssetCheckSeverity.ERROR,
        ),
    ]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            NO_FAILED,
            asset=TABLE_DESCRIPTIONS,
            description="No table description is FAILED (WARN: each says why in error_message).",
        ),
        dg.AssetCheckSpec(
            NO_STUCK_SCANS,
            asset=TABLE_DESCRIPTIONS,
            description="No table description is SYNCHRONIZING past its scan lease.",
        ),
    ],
    name="table_description_checks",
    can_subset=True,  # so the UI can execute either check on its own
)
def table_description_checks(context: dg.AssetCheckExecutionContext, catalogue: StoreResource):
    store = catalogue.get_store()
    with failures_as_dagster():
        scope = None  # on their own: every connection
        if context.op_execution_context.has_partition_key:  # after a refresh: its connection
            scope = [connection_for_partition(store, context.op_execution_context.partition_key)]
        outcomes = catalogue_checks(store, utcnow(), scope)
    selected = {key.name for key in context.selected_asset_check_keys}
    for outcome in outcomes:
        if outcome.name in selected:
            yield outcome.to_result()
