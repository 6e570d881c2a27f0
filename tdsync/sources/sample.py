"""Sources layer: a bounded look at a table's data: example rows and low-cardinality columns.

Every query is bounded: examples read `example_rows` rows; the cardinality probe first asks the
catalogue's statistics (PostgreSQL `pg_stats`), then reads at most `sample_rows` rows of the
remaining candidate columns, and only for a table larger than that sample confirms a candidate with
`SELECT DISTINCT col ... LIMIT max_categories + 1`, which the engine's statement timeout cuts off
(sources.py). A probe that times out leaves the column without categories; it never fails the table.
Columns whose names look secret are never probed and are masked in examples.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tdsync.config.credentials import MASK
from tdsync.domain.scan_model import ScanOptions
from tdsync.sources.reflected import ReflectedTable, end_transaction

_SECRET = re.compile(
    r"(?:^|_)(?:password|passwd|passphrase|pwd|secret|token|api_?key|apikey|access_?key|"
    r"private_?key|secret_?key|credentials?|salt|ssn|social_security(?:_number)?|"
    r"credit_?card(?:_number)?|card_?number|cc_?number|cvv|cvc|iban|pin_?code|"
    # The credential columns of system catalogs: MySQL/MariaDB mysql.user, PostgreSQL pg_authid,
    # pg_user_mapping(s) and pg_foreign_server options (an FDW's password), pg_subscription's
    # connection string.
    r"authentication_string|auth_string|rolpassword|umoptions|srvoptions|subconninfo)(?:_|$)"
)
# Columns secret only in one table: MariaDB keeps mysql.user's passwords in global_priv's JSON.
_SECRET_IN_TABLE = {("global_priv", "priv")}
_TIMEOUT_WORDS = (
    "statement timeout",
    "canceling statement",
    "max_statement_time",
    "max_execution_time",
    "interrupted",
    "timed out",
)
INT64 = 2**63
_CATEGORY_TYPES = (str, int, float, decimal.Decimal, bool)


def looks_secret(column_name: str, table_name: str = "") -> bool:
    """password, api_key, accessToken, user_ssn... (camelCase and any separator)."""
    if (table_name.lower(), column_name.lower()) in _SECRET_IN_TABLE:
        return True
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column_name)
    return bool(_SECRET.search(re.sub(r"[^a-z0-9]+", "_", snake.lower())))


@dataclass(frozen=True)
class ColumnStats:
    null_frac: float
    n_distinct: float
    common_values: list[str] | None
    common_freqs: list[float] | None


@dataclass(frozen=True)
class TableStats:
    rows: float  # the planner's estimate; negative or zero: never analysed
    columns: dict[str, ColumnStats]


@dataclass
class Sample:
    examples: list[dict[str, Any]] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def sample_table(
    conn: Connection,
    schema: str | None,
    name: str,
    reflected: ReflectedTable,
    stats: TableStats | None,
    options: ScanOptions,
) -> Sample:
    """Example rows and the categories of low-cardinality columns of one table or view."""
    sample = Sample()
    names = [c.name for c in reflected.columns]
    table = sa.table(name, *(sa.column(n) for n in names), schema=schema)
    if options.example_rows > 0 and names:
        rows = _bounded(conn, sa.select(*table.c).limit(options.example_rows), sample, "examples")
        secret = {n for n in names if looks_secret(n, name)}
        sample.examples = [
            {
                n: MASK if n in secret and v is not None else json_safe(v, options.max_value_chars)
                for n, v in zip(names, row, strict=True)
            }
            for row in rows or []
        ]

    if options.max_categories <= 0:
        return sample  # a metadata-only scan: no cardinality probe
    undecided: list[str] = []
    booleans = {c.name for c in reflected.columns if (c.data_type or "").upper() == "BOOLEAN"}
    for column in (c for c in reflected.categorical if not looks_secret(c, name)):
        decided = _from_stats(stats, column, options.max_categories)
        if decided is None:
            undecided.append(column)
        elif decided:
            if column in booleans:  # statistics spell booleans t / f
                decided = [category(v == "t") for v in decided]
            sample.categories[column] = _ordered(decided)
    if not undecided:
        return sample

    query = sa.select(*(table.c[c] for c in undecided)).limit(options.sample_rows)
    rows = _bounded(conn, query, sample, "cardinality sample")
    if rows is None:
        return sample
    seen: dict[str, set] = {c: set() for c in undecided}
    for row in rows:
        for column, value in zip(undecided, row, strict=True):
            values = seen.get(column)
            if values is None or value is None:
                continue
            if not isinstance(value, _CATEGORY_TYPES):
                del seen[column]  # binary or structured values are no categories
                continue
            values.add(value)
            if len(values) > options.max_categories or len(str(value)) > options.max_category_chars:
                del seen[column]  # too many values, or long text: not categorical
    complete = len(rows) < options.sample_rows  # the sample saw the whole table
    for column, values in seen.items():
        if not complete:
            confirm = sa.select(table.c[column]).distinct().limit(options.max_categories + 1)
            distinct = _bounded(conn, confirm, sample, f"distinct values of {column!r}")
            if distinct is None or len(distinct) > options.max_categories:
                continue
            values = {r[0] for r in distinct if r[0] is not None}
        if values:
            sample.categories[column] = _ordered({category(v) for v in values})
    return sample


def _ordered(categories) -> list[str]:
    """Numbers in numeric order (2 before 10), anything else alphabetically."""
    try:
        return sorted(categories, key=float)
    except ValueError:
        return sorted(categories)


def _bounded(conn: Connection, query: sa.Select, sample: Sample, what: str) -> list | None:
    """Run a probe; a statement timeout is noted and yields None, other errors propagate."""
    try:
        return conn.execute(query).fetchall()
    except sa.exc.DBAPIError as exc:
        end_transaction(conn)
        if not is_timeout(exc):
            raise
        sample.notes.append(f"{what}: statement timeout")
        return None


def is_timeout(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(word in text for word in _TIMEOUT_WORDS)


def category(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def json_safe(value: Any, max_chars: int = 100) -> Any:
    """A value a JSON document (and BSON) can hold, long text truncated with an ellipsis."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -INT64 <= value < INT64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        if value.is_finite() and value == value.to_integral_value() and abs(value) < INT64:
            return int(value)
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<binary, {len(bytes(value))} bytes>"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta | uuid.UUID):
        return str(value)
    if isinstance(value, dict | list | tuple):
        text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
        return _truncate(text, max_chars)
    return _truncate(str(value), max_chars)


def _truncate(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars] + "…"


# -- catalogue statistics ------------------------------------------------------------------------

_PG_STATS = sa.text(
    "SELECT s.tablename, s.attname, s.inherited, s.null_frac, s.n_distinct, "
    "s.most_common_vals::text, s.most_common_freqs::float8[], c.reltuples "
    "FROM pg_catalog.pg_stats s "
    "JOIN pg_catalog.pg_namespace n ON n.nspname = s.schemaname "
    "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename "
    "WHERE s.schemaname = :schema AND s.tablename = ANY(:names)"
)


def catalogue_stats(
    conn: Connection, schema: str | None, names: list[str]
) -> dict[str, TableStats]:
    """What the database already knows of its columns' values, in one query per chunk."""
    if conn.dialect.name != "postgresql" or not names:
        return {}
    schema = schema or sa.inspect(conn).default_schema_name
    columns: dict[str, dict[str, ColumnStats]] = {}
    rows_of: dict[str, float] = {}
    for table, column, inherited, null_frac, n_distinct, mcv, mcf, reltuples in conn.execute(
        _PG_STATS, {"schema": schema, "names": names}
    ):
        # Partitioned parents only have inherited statistics; plain tables the others.
        if inherited and column in columns.get(table, {}):
            continue
        rows_of[table] = float(reltuples)
        columns.setdefault(table, {})[column] = ColumnStats(
            null_frac=float(null_frac or 0),
            n_distinct=float(n_distinct or 0),
            common_values=parse_pg_array(mcv) if mcv else None,
            common_freqs=list(mcf) if mcf else None,
        )
    return {t: TableStats(rows_of[t], cols) for t, cols in columns.items()}


def _from_stats(stats: TableStats | None, column: str, limit: int) -> list[str] | None:
    """Categories ([] for high cardinality) when the statistics settle it, else None."""
    col = stats.columns.get(column) if stats else None
    if col is None or stats is None or col.n_distinct == 0:
        return None
    estimate = col.n_distinct if col.n_distinct > 0 else -col.n_distinct * max(stats.rows, 0)
    if estimate > limit:
        return []
    values, freqs = col.common_values or [], col.common_freqs or []
    if values and len(values) <= limit and sum(freqs) + col.null_frac >= 0.999:
        return sorted(values)
    return None


def parse_pg_array(text: str) -> list[str]:
    """The elements of a one-dimensional PostgreSQL array literal: `{a,"b c","d\\"e"}`."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        return [body]
    items, current, quoted, escaped, was_quoted = [], [], False, False, False
    for ch in body[1:-1]:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted, was_quoted = not quoted, True
        elif ch == "," and not quoted:
            items.append("".join(current))
            current, was_quoted = [], False
        else:
            current.append(ch)
    if current or was_quoted or body != "{}":
        items.append("".join(current))
    return items
