"""Domain layer: How a scan's columns meet the stored ones: people's work kept, drift recorded. No I/O.

A scan owns a column's structure (type, keys, nullability) and its measured cardinality. People
own its description and any extra fields they add. Categories are the scan's unless people edited
them: the scan keeps a copy of what it last wrote (`scanned_categories`), so a stored list that
differs from that copy was written by someone else and is kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tdsync.domain.models import ColumnDescription, SchemaChange

SCHEMA_CHANGES_KEPT = 20  # drift history entries kept per description
_SCAN_OWNED = {
    "name",
    "data_type",
    "is_primary_key",
    "nullable",
    "low_cardinality",
    "categories",
    "scanned_categories",
    "foreign_key",
}


def merge_columns(
    stored: list[dict[str, Any]] | None, scanned: list[ColumnDescription]
) -> list[dict[str, Any]]:
    """The columns to store: the scan's, in the table's order, with people's fields carried over
    by column name, or to a column found renamed (renamed_columns). Columns gone from the table
    are dropped; new ones come in undescribed."""
    by_name = {c.get("name"): c for c in stored or []}
    for old, new in renamed_columns(stored, scanned).items():
        by_name[new] = by_name[old]
    merged = []
    for column in scanned:
        doc = column.model_dump(mode="json")
        doc["scanned_categories"] = doc["categories"]
        old = by_name.get(column.name)
        if old is not None:
            people = {k: v for k, v in old.items() if k not in _SCAN_OWNED}
            doc = {**doc, **people}
            if _people_categories(old):
                doc["categories"] = old["categories"]
        merged.append(doc)
    return merged


def renamed_columns(
    stored: list[dict[str, Any]] | None, scanned: list[ColumnDescription]
) -> dict[str, str]:
    """{old name: new name} when exactly one column is gone and exactly one is new, of the same
    type at the same position: one column renamed. Anything less clear is a drop and an add."""
    before = [c.get("name") for c in stored or []]
    after = [c.name for c in scanned]
    gone = [i for i, name in enumerate(before) if name not in after]
    new = [i for i, name in enumerate(after) if name not in before]
    if len(gone) != 1 or len(new) != 1 or gone[0] != new[0]:
        return {}
    old_column, new_column = (stored or [])[gone[0]], scanned[new[0]]
    if old_column.get("data_type") != new_column.data_type:
        return {}
    return {before[gone[0]]: after[new[0]]}


def _people_categories(old: dict[str, Any]) -> bool:
    return "scanned_categories" in old and old.get("categories") != old.get("scanned_categories")


def schema_drift(
    stored: list[dict[str, Any]] | None,
    scanned: list[ColumnDescription],
    *,
    previously_scanned: bool,
    now: datetime,
) -> SchemaChange | None:
    """What changed in a table that an earlier scan described; None when nothing did."""
    if not previously_scanned or not stored:
        return None
    renamed = renamed_columns(stored, scanned)
    before = {renamed.get(c.get("name"), c.get("name")): c.get("data_type") for c in stored}
    after = {c.name: c.data_type for c in scanned}
    change = SchemaChange(
        detected_at=now,
        added=[n for n in after if n not in before],
        removed=[n for n in before if n not in after],
        type_changed=[n for n in after if n in before and before[n] != after[n]],
        renamed_columns=renamed,
    )
    if change.added or change.removed or change.type_changed or change.renamed_columns:
        return change
    return None
