"""Domain layer: What a scan takes and gives: its options, the rows it scans, and one table's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from tdsync.domain.models import ColumnDescription, SchemaChange, Status, TableType

# The bounds of a scan's options, wherever a scan is asked for (the scan job's run config, so the
# Dagster UI's too). Past them a scan reads or stores far more than a catalogue needs: 100,000
# example rows store the whole table in its description.
MaxCategories = Annotated[
    int, Field(ge=0, le=1_000, description="low-cardinality threshold (0: no categories)")
]
ExampleRows = Annotated[int, Field(ge=0, le=20, description="example rows kept per table")]
SampleRows = Annotated[
    int, Field(ge=1, le=1_000_000, description="rows read to find low-cardinality columns")
]
DataMaxAge = Annotated[
    int, Field(ge=0, le=366 * 86_400, description="changed-only scans: data older is re-read (s)")
]
Concurrency = Annotated[int, Field(ge=1, le=16, description="connections per source database")]

# Structure fingerprints of live tables by (schema, table): tdsync.sources.fingerprints reads them.
Fingerprints = dict[tuple[str, str], str]


@dataclass(frozen=True)
class ScanOptions:
    max_categories: int = 100  # a column with at most this many distinct values is low-cardinality
    example_rows: int = 3
    sample_rows: int = 10_000  # rows read to find low-cardinality candidates
    concurrency: int = 4  # connections (so concurrent queries) per source database
    max_value_chars: int = 100  # example values longer than this are truncated
    max_category_chars: int = 200  # a column holding longer values is not categorical
    reflect_chunk: int = 500  # tables reflected per batch of queries


@dataclass(frozen=True)
class ScanTarget:
    """One table description to scan, as the store holds it."""

    id: str
    db_connection_id: str
    schema_name: str
    table_name: str
    table_type: TableType
    status: Status = Status.NOT_SCANNED
    # False when the row has never been scanned, so it has no columns yet (people describe
    # columns a scan listed): its result is saved without reading the row first.
    scanned_before: bool = True
    fingerprint: str | None = None  # what its last scan recorded (changed-only scans compare it)
    last_schema_sync: datetime | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.schema_name}.{self.table_name}"


@dataclass
class TableScan:
    """The outcome for one table: its structure and sample, or the error that stopped it."""

    target: ScanTarget
    fingerprint: str | None = None  # structural, from the catalog (tdsync.sources.fingerprints)
    columns: list[ColumnDescription] = field(default_factory=list)
    table_schema: str | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # degraded parts, e.g. a timed-out sample

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class SavedScans:
    """What the store wrote for a batch of scans."""

    scanned: int = 0
    failed: int = 0
    drift: list[tuple[ScanTarget, SchemaChange]] = field(default_factory=list)
