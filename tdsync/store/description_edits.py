"""Store layer: people's edits of table descriptions (journaled before they are acknowledged),
and reading one description."""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument, WriteConcern
from pymongo.collection import Collection

from tdsync.domain.errors import TableDescriptionNotFound, ValidationFailed
from tdsync.domain.limits import check_edited_description
from tdsync.domain.models import TableDescription
from tdsync.store.common import described, object_id, storage_errors
from tdsync.store.connections import Connections


class DescriptionEdits:
    """People's writes to `table_descriptions`; a scan's own are tdsync.store.scans'."""

    def __init__(self, collection: Collection, connections: Connections) -> None:
        self.collection = collection
        self._journaled = collection.with_options(write_concern=WriteConcern(j=True))
        self.connections = connections

    def get_description(self, description_id: str) -> TableDescription:
        with storage_errors():
            doc = self.collection.find_one({"_id": object_id(description_id)})
        return self._one_described(doc, description_id)

    def _one_described(self, doc: dict[str, Any] | None, description_id: str) -> TableDescription:
        if doc is None:
            raise TableDescriptionNotFound(
                f"table description {description_id!r} not found", {"id": description_id}
            )
        return described([doc], self.connections.refreshed_at(doc["db_connection_id"]))[0]

    def update_description(self, description_id: str, changes: dict[str, Any]) -> TableDescription:
        """Set people's fields ($set paths prepared by the caller); returns the new document."""
        with storage_errors():
            doc = self._journaled.find_one_and_update(
                {"_id": object_id(description_id)},
                {"$set": changes},
                return_document=ReturnDocument.AFTER,
            )
        return self._one_described(doc, description_id)

    def merge_metadata(
        self, description_ids: list[str], metadata: dict[str, Any]
    ) -> list[TableDescription]:
        """Set these top-level metadata keys on each description (its other keys are kept);
        returns the descriptions, sorted by (schema_name, table_name)."""
        oids = [object_id(i) for i in description_ids]
        if not oids:
            return []
        with storage_errors():
            # A null metadata cannot take a key: made an object first.
            self._journaled.update_many(
                {"_id": {"$in": oids}, "metadata": None}, {"$set": {"metadata": {}}}
            )
            self._journaled.update_many(
                {"_id": {"$in": oids}},
                {"$set": {f"metadata.{key}": value for key, value in metadata.items()}},
            )
            docs = list(self.collection.find({"_id": {"$in": oids}}, {"scan_lease_expires_at": 0}))
        refreshed = self.connections.refreshed_at(docs[0]["db_connection_id"]) if docs else None
        return described(docs, refreshed)

    def edit_description(
        self,
        description_id: str,
        *,
        fields: dict[str, Any],
        columns: dict[str, dict[str, Any]],
    ) -> TableDescription:
        """Set top-level people's fields and, per named column, its people's fields, in one write.

        Columns are addressed by name through array filters, so a scan rewriting other parts of
        the document at the same moment loses nothing; a name that is not a column of the
        description (checked in the same write) is a ValidationFailed naming it, and so is an edit
        that would make the description too large to store (tdsync.domain.limits).
        """
        oid = object_id(description_id)
        if fields or any(columns.values()):
            with storage_errors():
                current = self.collection.find_one({"_id": oid})
            if current is not None:
                columns = _without_structure(current, columns)
                check_edited_description(current, fields, columns)
        update = dict(fields)
        array_filters = []
        for i, (name, changes) in enumerate(columns.items()):
            if not changes:
                continue
            array_filters.append({f"c{i}.name": name})
            update.update({f"columns.$[c{i}].{key}": value for key, value in changes.items()})
        query: dict[str, Any] = {"_id": oid}
        if columns:
            # One condition per name: SecantusDB's `$all` over an array of sub-documents'
            # field matches nothing once it names two values (any edit of two columns failed).
            query["$and"] = [{"columns.name": name} for name in columns]
        with storage_errors():
            if update:
                doc = self._journaled.find_one_and_update(
                    query,
                    {"$set": update},
                    array_filters=array_filters or None,
                    return_document=ReturnDocument.AFTER,
                )
            else:
                doc = self.collection.find_one(query)
        if doc is not None:
            return self._one_described(doc, description_id)
        with storage_errors():
            current = self.collection.find_one({"_id": oid}, {"columns": 1})
        if current is None:
            raise TableDescriptionNotFound(
                f"table description {description_id!r} not found", {"id": description_id}
            )
        known = [c.get("name") for c in current.get("columns") or []]
        unknown = [name for name in columns if name not in known]
        raise ValidationFailed(
            f"unknown column(s) {', '.join(map(repr, unknown))}: not columns of this table "
            "description (a scan lists them)",
            {"unknown_columns": unknown, "known_columns": known},
        )


# A column's structure as a scan reads it from the database. A person may send it back unchanged
# (clients send whole columns); a different value is refused, as the next scan would undo it.
STRUCTURAL_FIELDS = ("data_type", "is_primary_key", "nullable", "foreign_key")


def _without_structure(
    doc: dict[str, Any], columns: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The column edits less the structural fields that match the stored ones; a structural
    field that differs is a ValidationFailed naming it."""
    stored = {c.get("name"): c for c in doc.get("columns") or []}
    kept: dict[str, dict[str, Any]] = {}
    refused = []
    for name, changes in columns.items():
        column = stored.get(name, {})
        for key in STRUCTURAL_FIELDS:
            if key in changes and name in stored and changes[key] != column.get(key):
                refused.append(f"columns.{name}.{key}")
        kept[name] = {k: v for k, v in changes.items() if k not in STRUCTURAL_FIELDS}
    if refused:
        raise ValidationFailed(
            f"{', '.join(refused)}: a column's structure is read from the database by a scan "
            "and cannot be edited (send it as returned, or leave it out)",
            {"fields": refused, "editable": ["description", "categories", "low_cardinality"]},
        )
    return kept
