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
from tdsync.domain.scan_model import SavedScans, TableScan
from tdsync.domain.schema_merge import SCHEMA_CHANGES_KEPT, merge_columns, schema_drift
from tdsync.store.common import storage_errors

# MongoDB's (and SecantusDB's) codes for a document that would grow past 16 MiB.
TOO_LARGE_CODES = {10334, 17419, 17420}
# Short on purpose: writing it must not grow a document that is already at the limit.
TOO_LARGE_TO_SCAN = "too large to store: the description would exceed 16 MiB"
TOO_LARGE_TO_CLAIM = "too large to scan: the description is close to 16 MiB"


def save_chunk(
    descriptions: Collection, run_id: str, scans: list[TableScan], now: datetime, saved: SavedScans
) -> None:
    """Settle one chunk of a run's scans (tdsync.store.scans.save_scans), counting into `saved`;
    a row a person edited meanwhile is merged and written again."""
    pending = {ObjectId(s.target.id): s for s in scans}
    held = {"status": Status.SYNCHRONIZING.value, "scan_run_id": run_id}
    # A row never scanned has no columns to merge or compare (people describe the columns a
    # scan listed): the first attempt writes it without reading it (a first scan of 10,000
    # tables saves 200 reads). Whatever must be tried again is read.
    unread = {oid for oid, s in pending.items() if not s.target.scanned_before}
    for _attempt in range(5):
        with storage_errors():
            docs: list[dict[str, Any]] = [{"_id": oid} for oid in unread]
            to_read = [oid for oid in pending if oid not in unread]
            if to_read:
                docs += descriptions.find(
                    {"_id": {"$in": to_read}, **held}, {"columns": 1, "last_schema_sync": 1}
                )
            ops, outcomes = [], []
            for doc in docs:
                scan = pending[doc["_id"]]
                update, drift = settling_update(scan, doc, now)
                # A row that was read is written only if its columns are still as read.
                unchanged = (
                    {} if doc["_id"] in unread or not scan.ok else {"columns": doc.get("columns")}
                )
                ops.append(UpdateOne({"_id": doc["_id"], **held, **unchanged}, update))
                outcomes.append((scan, drift))
            unread = set()
            if not ops:
                break
            written, too_large = write_settling(descriptions, ops)
            oversized = {ObjectId(outcomes[i][0].target.id) for i in too_large}
            for oid in oversized:  # that row alone fails; the chunk's others are written
                fail_too_large(descriptions, {"_id": oid, **held}, TOO_LARGE_TO_SCAN)
            retry, lost = set(), set()
            if written + len(too_large) < len(ops):
                others = [s for s, _ in outcomes if ObjectId(s.target.id) not in oversized]
                retry, lost = _unsettled(descriptions, run_id, others, now)
        skipped = retry | lost
        for scan, drift in outcomes:
            if ObjectId(scan.target.id) in oversized:
                saved.failed += 1
                continue
            if ObjectId(scan.target.id) in skipped:
                continue
            if scan.ok:
                saved.scanned += 1
                if drift is not None:
                    saved.drift.append((scan.target, drift))
            else:
                saved.failed += 1
        pending = {oid: scan for oid, scan in pending.items() if oid in retry}
        if not pending:
            break


def _unsettled(
    descriptions: Collection, run_id: str, scans: list[TableScan], now: datetime
) -> tuple[set[ObjectId], set[ObjectId]]:
    """After a short write, who lost a race: rows still held by this run were edited meanwhile
    (merged again); rows a newer scan took over, or a refresh settled, are not this run's."""
    fields = {"status": 1, "scan_run_id": 1, "error_message": 1, "last_schema_sync": 1}
    ids = [ObjectId(scan.target.id) for scan in scans]
    rows = {d["_id"]: d for d in descriptions.find({"_id": {"$in": ids}}, fields)}
    retry, lost = set(), set()
    for oid, scan in zip(ids, scans, strict=True):
        row = rows.get(oid, {})
        if row.get("status") == Status.SYNCHRONIZING.value and row.get("scan_run_id") == run_id:
            retry.add(oid)
        elif not settled_by(row, scan, now):
            lost.add(oid)
    return retry, lost


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
