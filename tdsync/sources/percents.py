"""Sources layer: `%` in names and literals, which SQLAlchemy doubles for the drivers whose
parameters are `%s` (psycopg2, pymysql): undone where it leaks into what people read."""

from __future__ import annotations

import copy

from sqlalchemy.engine import Dialect

from tdsync.domain.models import TableType
from tdsync.sources.reflected import RawTable


def undo_doubled_percents(
    dialect: Dialect, raw: dict[str, RawTable | Exception], views: dict[str, TableType]
) -> None:
    """SQLAlchemy 2.0 reflects a MySQL/MariaDB view by rewriting its DESCRIBE output as a
    CREATE TABLE, quoting each column name for the driver (every `%` doubled), and parses that
    back without undoing it: view column `%s` comes back as `%%s`. Every `%` of such a name
    was doubled, so halving them is exact."""
    if not getattr(dialect.identifier_preparer, "_double_percents", False):
        return
    for name in views:
        found = raw.get(name)
        if isinstance(found, RawTable):
            for column in found.columns:
                column["name"] = column["name"].replace("%%", "%")


def display_dialect(dialect: Dialect) -> Dialect:
    """The dialect for DDL and type names that people read and run.

    With a driver whose parameters are `%s` / `%(name)s` (psycopg2, pymysql) SQLAlchemy doubles
    every `%` it renders, names and literals alike, for the driver to undo: table `50%` would be
    stored as `CREATE TABLE "50%%"`. This copy renders them as the database spells them.
    """
    preparer = dialect.identifier_preparer
    if not getattr(preparer, "_double_percents", False):
        return dialect
    display = copy.copy(dialect)
    display.identifier_preparer = copy.copy(preparer)
    display.identifier_preparer.dialect = display
    display.identifier_preparer._double_percents = False
    display.identifier_preparer._strings = {}  # its memo of quoted names holds doubled ones
    display.type_compiler_instance = type(dialect.type_compiler_instance)(display)
    return display
