"""Domain layer: What people may write into the catalogue: the form of an alias and how much text a table
description may hold.

The API states the per-field caps in its schemas (a 422 naming the field); the store applies the
alias rule and the whole-document caps, so the CLI and every other caller meet the same rules.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import bson

from tdsync.domain.errors import ValidationFailed

ALIAS_MAX_CHARS = 200
TEXT_MAX_CHARS = 65_536  # a table's or a column's description: far more than anyone writes
CATEGORIES_MAX = 1_000  # hand-edited categories of one column
CATEGORY_MAX_CHARS = 1_000
METADATA_MAX_BYTES = 256 * 1024  # a connection's or a description's metadata, as BSON
# MongoDB refuses documents over 16 MiB. People's text (descriptions, categories, metadata) may
# take 4 MiB of a description; the whole document 12 MiB, which leaves room for a re-scan to
# grow its columns, examples and drift history.
PEOPLES_TEXT_MAX_BYTES = 4 * 1024 * 1024
DOCUMENT_MAX_BYTES = 12 * 1024 * 1024

# Control, format (zero-width, bidi), surrogate, private-use and unassigned characters, and line
# or paragraph separators: invisible or unprintable, so two aliases that look alike could differ.
_REFUSED_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def normalise_alias(alias: str) -> str:
    """The alias as stored and looked up: NFKC (full-width `ｓｈｏｐ` is `shop`, `ﬁ` is `fi`),
    trimmed. Raises ValueError for an alias that is empty or holds an invisible character."""
    text = unicodedata.normalize("NFKC", alias).strip()
    refused = sorted(
        {f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) in _REFUSED_CATEGORIES}
    )
    if refused:
        raise ValueError(
            f"an alias cannot hold control or invisible characters ({', '.join(refused)})"
        )
    if not text:
        raise ValueError("an alias cannot be empty or only spaces")
    if len(text) > ALIAS_MAX_CHARS:
        raise ValueError(f"an alias holds at most {ALIAS_MAX_CHARS} characters")
    return text


def bson_size(value: Any) -> int:
    """How many bytes `value` takes in a stored document."""
    return len(bson.encode({"v": value}))


def check_metadata_size(metadata: dict[str, Any]) -> dict[str, Any]:
    size = bson_size(metadata)
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"metadata takes {size:,} bytes; at most {METADATA_MAX_BYTES:,} are kept")
    return metadata


def check_edited_description(
    doc: dict[str, Any], fields: dict[str, Any], columns: dict[str, dict[str, Any]]
) -> None:
    """Refuse (ValidationFailed) an edit that would make the description too large to store.

    `doc` is the stored description; `fields` and `columns` are the edit (top-level people's
    fields, and per column name its people's fields). The detail names the edit's largest field.
    """
    edited = {**doc, **fields}
    edited["columns"] = [
        {**column, **columns.get(column.get("name"), {})} for column in doc.get("columns") or []
    ]
    changed = {key: bson_size(value) for key, value in fields.items()}
    for name, changes in columns.items():
        changed |= {f"columns.{name}.{key}": bson_size(value) for key, value in changes.items()}
    field = max(changed, key=changed.__getitem__) if changed else None
    text = _peoples_text_bytes(edited)
    if text > PEOPLES_TEXT_MAX_BYTES:
        raise ValidationFailed(
            f"{field}: the table description would hold {text:,} bytes of descriptions, "
            f"categories and metadata; at most {PEOPLES_TEXT_MAX_BYTES:,} are kept",
            {"field": field, "bytes": text, "max_bytes": PEOPLES_TEXT_MAX_BYTES},
        )
    size = len(bson.encode(edited))
    if size > DOCUMENT_MAX_BYTES:
        raise ValidationFailed(
            f"{field}: the table description would take {size:,} bytes; "
            f"at most {DOCUMENT_MAX_BYTES:,} are kept",
            {"field": field, "bytes": size, "max_bytes": DOCUMENT_MAX_BYTES},
        )


def _peoples_text_bytes(doc: dict[str, Any]) -> int:
    columns = [(c.get("description"), c.get("categories")) for c in doc.get("columns") or []]
    return bson_size([doc.get("description"), doc.get("metadata"), columns])
