"""The catalogue in the Dagster UI: the `table_descriptions` asset and its health checks.

One partition per connection (keyed by connection id, the same value as the run tag
`tdsync/db_connection_id`). Every refresh records a materialization of its connection's partition
with counts by status and what it added, deprecated and restored. The two checks are reported by
the `check_table_descriptions` sensor whenever their outcome changes (a refresh stays one read and
one write), and can be run on demand from the UI.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg

from tdsync.defs.resources import CatalogueResource
from tdsync.models import Status, utcnow
from tdsync.store import CatalogueStore

CONNECTIONS = dg.DynamicPartitionsDefinition(name="tdsync_connections")
TABLE_DESCRIPTIONS = dg.AssetKey("table_descriptions")
NO_FAILED = "no_failed_descriptions"
NO_STUCK_SCANS = "no_scan_past_its_lease"

table_descriptions = dg.AssetSpec(
    key=TABLE_DESCRIPTIONS,
    description=(
        "The catalogue of table descriptions in MongoDB, one partition per connection (its id). "
        "Each refresh of a connection records a materialization with its counts by status."
    ),
    partitions_def=CONNECTIONS,
    group_name="catalogue",
    kinds={"mongodb"},
)


def report_refresh(
    context: dg.OpExecutionContext,
    connection_id: str,
    changes: Mapping[str, Any],
    status_counts: Mapping[str, int],
) -> None:
    """Record a refresh on the asset: a materialization of its connection's partition.

    `status_counts` are the refresh plan's own, not counted in the store again: on SecantusDB
    each count reads every matching document (0.3 s for 10,000)."""
    instance = context.instance
    if not instance.has_dynamic_partition(CONNECTIONS.name, connection_id):
        instance.add_dynamic_partitions(CONNECTIONS.name, [connection_id])
    context.log_event(
        dg.AssetMaterialization(
            asset_key=TABLE_DESCRIPTIONS,
            partition=connection_id,
            metadata={**status_metadata(status_counts), **changes},
        )
    )


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


def catalogue_checks(store: CatalogueStore, now: datetime) -> list[CheckOutcome]:
    """No description is FAILED; none is SYNCHRONIZING past its scan lease. Per connection, the
    counts come from the (connection, status) index, so checking after every refresh stays cheap."""
    failed: dict[str, dict[str, str]] = {}
    stuck: dict[str, list[str]] = {}
    failed_total = 0
    for conn in store.list_connections():
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
)
def table_description_checks(catalogue: CatalogueResource):
    for outcome in catalogue_checks(catalogue.get_store(), utcnow()):
        yield outcome.to_result()
