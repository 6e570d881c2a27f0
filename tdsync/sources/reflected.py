"""Sources layer: what reflecting a table gives (ReflectedTable, the raw reflected parts) and
the errors it may meet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tdsync.domain.models import ColumnDescription, ForeignKey

REFLECTION_ERRORS = (sa.exc.DBAPIError, sa.exc.SQLAlchemyError, NotImplementedError)


class TableNotFound(LookupError):
    """The table or view is no longer in the source database."""


def table_gone(name: str) -> TableNotFound:
    return TableNotFound(f"{name!r} is not in the source database any more")


def described_column(
    name: str, data_type: str, nullable: Any, pk: list[str], fk: ForeignKey | None
) -> ColumnDescription:
    # A key column is never nullable, whatever the driver reports.
    return ColumnDescription(
        name=name,
        data_type=data_type,
        is_primary_key=name in pk,
        nullable=bool(nullable) and name not in pk,
        foreign_key=fk,
    )


@dataclass
class ReflectedTable:
    columns: list[ColumnDescription]
    ddl: str
    categorical: list[str] = field(default_factory=list)  # columns worth a cardinality probe
    fingerprint: str | None = None  # of the structure reflected (tdsync.sources.fingerprints)


@dataclass
class RawTable:
    columns: list[dict[str, Any]]
    pk: dict[str, Any] | None = None
    fks: list[dict[str, Any]] = field(default_factory=list)
    uniques: list[dict[str, Any]] = field(default_factory=list)


def end_transaction(conn: Connection) -> None:
    """End the snapshot and free catalogue locks; after an error PostgreSQL refuses every
    statement until the transaction ends."""
    if conn.in_transaction():
        conn.rollback()
