"""The scan's pure rules: column merge, drift, secrets, JSON-safe values, catalogue statistics."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid

import pytest

from tdsync.domain.models import ColumnDescription, utcnow
from tdsync.domain.schema_merge import merge_columns, schema_drift
from tdsync.sources.sample import ColumnStats, TableStats, _from_stats, json_safe, looks_secret
from tdsync.sources.sample import parse_pg_array as parse
from tdsync.sources.scanner import _message


def col(name: str, data_type: str = "TEXT", **kw) -> ColumnDescription:
    return ColumnDescription(name=name, data_type=data_type, **kw)


def test_merge_keeps_descriptions_by_name_drops_vanished_and_adds_new_columns() -> None:
    stored = [
        {"name": "a", "data_type": "INT", "description": "the a", "owner_note": "keep me"},
        {"name": "gone", "data_type": "INT", "description": "lost with its column"},
    ]
    merged = merge_columns(stored, [col("new"), col("a", "BIGINT", is_primary_key=True)])
    assert [c["name"] for c in merged] == ["new", "a"]
    assert merged[0]["description"] is None
    assert merged[1]["description"] == "the a" and merged[1]["owner_note"] == "keep me"
    assert merged[1]["data_type"] == "BIGINT" and merged[1]["is_primary_key"] is True


def test_merge_keeps_categories_people_edited_and_refreshes_the_scans_own() -> None:
    stored = [
        {"name": "edited", "categories": ["x", "y", "z"], "scanned_categories": ["x", "y"]},
        {"name": "owned", "categories": ["x"], "scanned_categories": ["x"]},
    ]
    scanned = [
        col("edited", low_cardinality=True, categories=["x"]),
        col("owned", low_cardinality=True, categories=["x", "w"]),
    ]
    edited, owned = merge_columns(stored, scanned)
    assert edited["categories"] == ["x", "y", "z"] and edited["scanned_categories"] == ["x"]
    assert owned["categories"] == ["x", "w"]


def test_drift_lists_added_removed_and_retyped_columns_of_a_scanned_table() -> None:
    stored = [{"name": "a", "data_type": "INT"}, {"name": "b", "data_type": "TEXT"}]
    now = utcnow()
    # `c` of another type than `b`: the same type at b's position would be b renamed (issue 17).
    scanned = [col("a", "BIGINT"), col("c", "DATE")]
    change = schema_drift(stored, scanned, previously_scanned=True, now=now)
    assert (change.added, change.removed, change.type_changed) == (["c"], ["b"], ["a"])
    assert change.detected_at == now


def test_no_drift_for_a_first_scan_or_an_unchanged_table() -> None:
    stored = [{"name": "a", "data_type": "INT"}]
    now = utcnow()
    assert schema_drift(stored, [col("a", "INT")], previously_scanned=True, now=now) is None
    assert schema_drift([], [col("a", "INT")], previously_scanned=False, now=now) is None


@pytest.mark.parametrize(
    "name",
    ["password", "user_password", "passwd", "apiKey", "API_KEY", "access_token", "secret",
     "ssn", "credit_card_number", "privateKey", "db pwd"],
)  # fmt: skip
def test_secret_looking_column_names(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["status", "tokens_used", "passenger", "description", "spin"])
def test_ordinary_column_names(name: str) -> None:
    assert not looks_secret(name)


def test_json_safe_values() -> None:
    assert json_safe(decimal.Decimal("10.50")) == 10.5
    assert json_safe(decimal.Decimal("7")) == 7
    assert json_safe(float("nan")) == "nan"
    assert json_safe(2**70) == str(2**70)
    assert json_safe(b"\x00\x01") == "<binary, 2 bytes>"
    assert json_safe(dt.date(2024, 1, 2)) == "2024-01-02"
    assert json_safe(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert json_safe({"k": [1, 2]}) == '{"k":[1,2]}'
    assert json_safe("é" * 150, 100) == "é" * 100 + "…"
    json.dumps([json_safe(v) for v in (None, True, 1, 1.5, "x", dt.timedelta(seconds=3))])


def test_pg_array_literals() -> None:
    assert parse("{a,b}") == ["a", "b"]
    assert parse('{"a b","c,d","e\\"f"}') == ["a b", "c,d", 'e"f']
    assert parse('{""}') == [""]
    assert parse("{}") == []


def test_statistics_settle_a_column_when_they_can() -> None:
    stats = TableStats(
        rows=1_000_000,
        columns={
            "status": ColumnStats(0.1, 3, ["b", "a", "c"], [0.3, 0.3, 0.3]),
            "unique": ColumnStats(0.0, -1, None, None),
            "partial": ColumnStats(0.0, 50, ["a"], [0.5]),  # the common values miss some
        },
    )
    assert _from_stats(stats, "status", 100) == ["a", "b", "c"]
    assert _from_stats(stats, "unique", 100) == []  # high cardinality: no query needed
    assert _from_stats(stats, "partial", 100) is None  # undecided: sample it
    assert _from_stats(stats, "missing", 100) is None


def test_a_table_error_never_keeps_part_of_the_password_where_it_is_cut() -> None:
    password = "s3cr3t-pa55w0rd"
    uri = f"postgresql://me:{password}@db/shop"
    prefix = "cannot describe the table: ValueError: "
    for at in range(480, 505):  # the password straddles the 500-character cut
        error = ValueError("x" * (at - len(prefix)) + password + " and more")
        message = _message(error, uri)
        assert len(message) <= 500
        assert not any(password[:n] in message for n in range(4, len(password) + 1)), at


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("user", "authentication_string"),
        ("user", "Password"),
        ("pg_authid", "rolpassword"),
        ("pg_shadow", "passwd"),
        ("pg_user_mapping", "umoptions"),
        ("pg_user_mappings", "umoptions"),
        ("pg_foreign_server", "srvoptions"),
        ("pg_subscription", "subconninfo"),
        ("global_priv", "Priv"),
    ],
)
def test_credential_columns_of_system_catalogs_look_secret(table: str, column: str) -> None:
    assert looks_secret(column, table)


def test_a_column_secret_in_one_system_table_is_ordinary_elsewhere() -> None:
    assert not looks_secret("priv", "grants_report")
