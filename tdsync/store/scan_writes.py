"""Store layer: the writes that claim and settle a scan's rows (tdsync.store.scans), a row too
large for its write failing alone instead of stopping the others."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DocumentTooLarge, WriteError

from tdsync.domain.models import SchemaChange, Status, as_utc
from tdsync.domain.scan_model import TableScan
from tdsync.domain.schema_merge import SCHEMA_CHANGES_KEPT, merge_columns, schema_drift

# MongoDB's (and SecantusDB's) codes for a document that would grow past 16 MiB.
TOO_LARGE_CODES = {10334, 17419, 17420}
# Short on purpose: writing it must not grow a document that is already at the limit.
TOO_LARGE_TO_SCAN = "too large to store: the description would exceed 16 MiB"
TOO_LARGE_TO_CLAIM = "too large to scan: the description is close to 16 MiB"


def write_settling(descriptions: Collection, ops: list[UpdateOne]) -> tuple[int, list[int]]:
    """Write a chunk's settling updates, unordered; returns how many rows changed and the
    positions of the updates refused because their row would outgrow a document."""
    try:
        return descriptions.bulk_write(ops, ordered=False).modified_count, []
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        too_large = [e["index"] for e in errors if e.get("code") in TOO_LARGE_CODES]
        if len(too_large) < len(errors):
            raise
        return exc.details.get("nModified", 0), too_large
    except DocumentTooLarge:
        # One update is too large to send at all: write them one by one to know which.
        written, too_large = 0, []
        for i, op in enumerate(ops):
            try:
                written += descriptions.bulk_write([op]).modified_count
            except DocumentTooLarge:
                too_large.append(i)
            except BulkWriteError as exc:
                codes = {e.get("code") for e in exc.details.get("writeErrors", [])}
                if not codes <= TOO_LARGE_CODES:
                    raise
                too_large.append(i)
        return written, too_large


def claim_rows(descriptions: Collection, query: dict[str, Any], claim: dict[str, Any]) -> None:
    """Mark the rows `query` matches SYNCHRONIZING; a row too large to take the scan's fields
    becomes FAILED instead of stopping the claim half-way (the rows after it unclaimed, those
    before it SYNCHRONIZING under a run that never starts)."""
    try:
        descriptions.update_many(query, claim)
        return
    except WriteError as exc:
        if exc.code not in TOO_LARGE_CODES:
            raise
    for doc in descriptions.find(query, {"_id": 1}):
        try:
            descriptions.update_one({**query, "_id": doc["_id"]}, claim)
        except WriteError as exc:
            if exc.code not in TOO_LARGE_CODES:
                raise
            fail_too_large(descriptions, {"_id": doc["_id"]}, TOO_LARGE_TO_CLAIM)


def claim_rows_by_id(
    descriptions: Collection, query: dict[str, Any], claim: dict[str, Any], ids: list[ObjectId]
) -> None:
    """claim_rows for these ids, one conditional update each in one unordered bulk write."""
    try:
        descriptions.bulk_write([UpdateOne({**query, "_id": i}, claim) for i in ids], ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") not in TOO_LARGE_CODES for e in errors):
            raise
        for error in errors:
            fail_too_large(descriptions, {"_id": ids[error["index"]]}, TOO_LARGE_TO_CLAIM)


def fail_too_large(descriptions: Collection, query: dict[str, Any], reason: str) -> None:
    """Mark a row too large for its update FAILED, saying why if even that fits."""
    done = {"scan_lease_expires_at": "", "scan_run_id": ""}
    try:
        descriptions.update_one(
            query,
            {"$set": {"status": Status.FAILED.value, "error_message": reason}, "$unset": done},
        )
    except WriteError as exc:
        if exc.code not in TOO_LARGE_CODES:
            raise
        # This write only shrinks the document.
        descriptions.update_one(query, {"$set": {"status": Status.FAILED.value}, "$unset": done})


def settling_update(
    scan: TableScan, doc: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], SchemaChange | None]:
    """The write that settles a row (`doc`: its stored columns and last_schema_sync, when read)."""
    done = {"scan_lease_expires_at": "", "scan_run_id": ""}
    if not scan.ok:
        return {
            "$set": {"status": Status.FAILED.value, "error_message": scan.error},
            "$unset": done,
        }, None
    stored = doc.get("columns")
    drift = schema_drift(
        stored, scan.columns, previously_scanned=doc.get("last_schema_sync") is not None, now=now
    )
    update: dict[str, Any] = {
        "$set": {
            "status": Status.SCANNED.value,
            "error_message": None,
            "table_schema": scan.table_schema,
            "columns": merge_columns(stored, scan.columns),
            "examples": scan.examples,
            "last_schema_sync": now,
            "fingerprint": scan.fingerprint,
        },
        "$unset": done,
    }
    if drift is not None:
        update["$push"] = {
            "schema_changes": {"$each": [drift.model_dump()], "$slice": -SCHEMA_CHANGES_KEPT}
        }
    return update, drift


def settled_by(row: dict[str, Any], scan: TableScan, now: datetime) -> bool:
    """Whether this row holds what save_scans wrote for `scan` at `now`."""
    if not scan.ok:
        return row.get("status") == Status.FAILED.value and row.get("error_message") == scan.error
    return row.get("status") == Status.SCANNED.value and as_utc(row.get("last_schema_sync")) == now
