"""The catalogue store on a real MongoDB wire server (SecantusDB): indexes, round trips, secrets."""

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from bson import ObjectId
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pymongo import MongoClient, monitoring
from pymongo.errors import DuplicateKeyError

from tdsync.config.credentials import Cipher
from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.domain.errors import (
    ConnectionNotFound,
    DuplicateAlias,
    InvalidObjectId,
    StorageUnavailable,
    TableDescriptionNotFound,
)
from tdsync.domain.models import ColumnDescription, Status, TableType, new_description_doc, utcnow
from tdsync.domain.refresh_rules import Listing, LiveTable, plan_refresh
from tdsync.domain.scan_model import TableScan
from tdsync.store import CatalogueStore, mongo_client
from tdsync_tests.test_refresh_rules import live_listings

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PG_URI = "postgresql://app:hunter2@db.internal:5432/shop"


@dataclass
class CommandLog(monitoring.CommandListener):
    """Every command the store sends, as (name, collection)."""

    db_name: str
    commands: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name != self.db_name:
            return
        name = event.command_name
        target = event.command.get("collection") if name == "getMore" else event.command.get(name)
        with self._lock:
            self.commands.append((name, str(target), dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def clear(self) -> None:
        with self._lock:
            self.commands.clear()

    def on(self, collection: str) -> list[str]:
        return [name for name, target, _ in self.commands if target == collection]

    def refresh_reads_and_writes(self) -> list[str]:
        """The refresh's own commands on the descriptions, without its asset checks' reads:
        those run as a separate step after it and select by status (index-backed counts, the
        SYNCHRONIZING rows), where the refresh reads all of a connection's rows."""
        return [
            name
            for name, target, command in self.commands
            if target == "table_descriptions" and "status" not in _filter(command)
        ]


def _filter(command: dict[str, Any]) -> dict[str, Any]:
    if "pipeline" in command:  # count_documents
        return next((s["$match"] for s in command["pipeline"] if "$match" in s), {})
    return command.get("filter") or {}


@pytest.fixture
def counted(tdsync_env: dict[str, str]) -> Iterator[tuple[CatalogueStore, CommandLog]]:
    """A store on its own client, whose every command is recorded."""
    log = CommandLog(tdsync_env["TDSYNC_MONGO_DB"])
    client = MongoClient(
        tdsync_env["TDSYNC_MONGO_URI"], tz_aware=True, retryWrites=False, event_listeners=[log]
    )
    store = CatalogueStore(
        client, tdsync_env["TDSYNC_MONGO_DB"], Cipher(tdsync_env["TDSYNC_ENCRYPTION_KEY"])
    )
    store.ensure_indexes()
    log.clear()
    yield store, log
    client.close()


def bulk_commands(log: CommandLog, collection: str) -> list[dict[str, Any]]:
    """The write commands sent to a collection; one bulk write is one command per kind of write."""
    writes = [
        (name, cmd)
        for name, target, cmd in log.commands
        if target == collection and name in ("insert", "update", "delete")
    ]
    names = [name for name, _ in writes]
    assert len(names) == len(set(names)), f"more than one bulk write: {names}"
    return [cmd for _, cmd in writes]


def refresh_with(store: CatalogueStore, connection_id: str, listing: Listing) -> int:
    plan = plan_refresh(store.stored_tables(connection_id), listing, NOW)
    return store.apply_refresh(connection_id, plan, NOW)


def public(*names: str, kind: TableType = TableType.TABLE) -> Listing:
    return Listing({"public": [LiveTable("public", n, kind) for n in names]})


def statuses(store: CatalogueStore, connection_id: str) -> dict[str, str]:
    return {d.table_name: d.status.value for d in store.list_descriptions(connection_id)}


# -- indexes --------------------------------------------------------------------------------


def test_descriptions_have_a_unique_index_on_connection_schema_and_table(
    store: CatalogueStore,
) -> None:
    unique = [
        info["key"]
        for info in store.descriptions.index_information().values()
        if info.get("unique")
    ]
    assert [("db_connection_id", 1), ("schema_name", 1), ("table_name", 1)] in unique
    doc = new_description_doc(
        db_connection_id="c1",
        schema_name="public",
        table_name="users",
        table_type=TableType.TABLE,
        now=NOW,
    )
    store.descriptions.insert_one(doc)
    with pytest.raises(DuplicateKeyError):
        store.descriptions.insert_one({**doc, "_id": ObjectId()})
    # Case matters: `Users` beside `users` is a second table, not a duplicate.
    store.descriptions.insert_one({**doc, "_id": ObjectId(), "table_name": "Users"})
    assert store.descriptions.count_documents({"db_connection_id": "c1"}) == 2


# -- round trips -----------------------------------------------------------------------------


def test_apply_refresh_writes_only_what_changed_in_one_bulk_write(counted) -> None:
    store, log = counted
    cid = str(ObjectId())
    names = [f"t{i:02d}" for i in range(40)]
    refresh_with(store, cid, public(*names))
    refresh_with(store, cid, public(*names[:-3]))  # three deprecated

    log.clear()
    plan = plan_refresh(
        store.stored_tables(cid),
        public(*names[1:-1], "new_a", "new_b"),  # t00 gone, t37 and t38 back, two new
        NOW,
    )
    assert log.on("table_descriptions") == ["find"]  # one narrow read
    log.clear()
    written = store.apply_refresh(cid, plan, NOW)

    assert written == 5
    # One unordered bulk write, holding the five changes and nothing else. The server may get it
    # as one command per kind of write (insert for new tables, update for the rest).
    writes = bulk_commands(log, "table_descriptions")
    assert sum(len(cmd.get("documents", [])) + len(cmd.get("updates", [])) for cmd in writes) == 5
    assert all(cmd["ordered"] is False for cmd in writes)

    log.clear()
    again = plan_refresh(store.stored_tables(cid), public(*names[1:-1], "new_a", "new_b"), NOW)
    assert again.is_empty
    assert store.apply_refresh(cid, again, NOW) == 0
    assert log.on("table_descriptions") == ["find"]  # and nothing written


def test_a_refresh_job_reads_descriptions_once_and_writes_once(
    counted, sqlite_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    store, log = counted
    monkeypatch.setattr("tdsync.defs.resources.shared_store", lambda settings: store)
    engine = sa.create_engine(f"sqlite:///{sqlite_path}")
    with engine.begin() as conn:
        for i in range(25):
            conn.execute(sa.text(f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    cid = store.add_connection(alias="shop", connection_uri=f"sqlite:///{sqlite_path}").id

    log.clear()
    assert runs.refresh(cid, trigger="cli", settings=settings)["added"] == 25
    # The asset checks' reads (by status, a step of their own) are not the refresh's.
    assert log.refresh_reads_and_writes()[0] == "find"  # read once...
    assert log.refresh_reads_and_writes().count("find") == 1
    assert len(bulk_commands(log, "table_descriptions")) == 1  # ...written in one command
    first = [(name, target) for name, target, _ in log.commands]
    # ...up to the release of its lease: the checks' step runs after it.
    first = first[: max(i for i, c in enumerate(first) if c[1] == "connection_leases") + 1]

    log.clear()
    assert runs.refresh(cid, trigger="cli", settings=settings)["unchanged"] == 25
    # Nothing changed: nothing written, and (issue 18) no row read either: the catalogue's
    # version document proves it unchanged since the first refresh (read and bumped, then the
    # snapshot recorded again at the new version).
    assert log.refresh_reads_and_writes() == []
    assert log.on("catalogue_versions") == ["findAndModify", "update"]
    # Every round trip of the first refresh, for the record (issue 2 asks for the number).
    print(f"store round trips of a refresh: {len(first)}: {first}")
    assert len(first) <= 10, first


def test_concurrent_refreshes_from_one_stale_read_neither_duplicate_nor_undo(
    store: CatalogueStore,
) -> None:
    # Without the per-connection lease (tdsync.services.connection_lease), refreshes may plan from the same read
    # and write at once: the conditional writes and the unique index keep the result right.
    cid = str(ObjectId())
    names = [f"t{i:02d}" for i in range(20)]
    refresh_with(store, cid, public(*names))
    refresh_with(store, cid, public(*names[2:]))  # t00, t01 deprecated
    listing = public(*names[1:], "n0", "n1", "n2")  # t00 stays gone, t01 back, three new
    stale = store.stored_tables(cid)
    plans = [plan_refresh(stale, listing, NOW) for _ in range(20)]

    written: list[int] = []
    threads = [
        threading.Thread(target=lambda p=p: written.append(store.apply_refresh(cid, p, NOW)))
        for p in plans
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert len(written) == 20
    assert sum(written) == 4  # each change written exactly once, by whichever came first
    docs = list(store.descriptions.find({"db_connection_id": cid}))
    assert len(docs) == len({(d["schema_name"], d["table_name"]) for d in docs}) == 23
    found = statuses(store, cid)
    assert found.pop("t00") == "DEPRECATED"
    assert set(found.values()) == {"NOT_SCANNED"}


# -- connections: secrets, dialect, aliases ---------------------------------------------------


def test_connection_uri_is_encrypted_at_rest(store: CatalogueStore, tdsync_env) -> None:
    conn = store.add_connection(alias="shop", connection_uri=PG_URI)
    raw = store.connections.find_one({"_id": ObjectId(conn.id)})
    assert "hunter2" not in str(raw)
    assert "db.internal" not in raw["connection_uri"]
    assert Cipher(tdsync_env["TDSYNC_ENCRYPTION_KEY"]).decrypt(raw["connection_uri"]) == PG_URI
    assert store.connection_uri(conn.id) == PG_URI  # decrypted only for opening an engine


def test_every_returned_connection_masks_the_password(store: CatalogueStore) -> None:
    masked = "postgresql://app:*****@db.internal:5432/shop"
    created = store.add_connection(alias="shop", connection_uri=PG_URI, schemas=["public"])
    returned = [
        created,
        store.get_connection(created.id),
        store.get_connection("shop"),  # by alias
        *store.list_connections(),
        store.update_connection(created.id, metadata={"team": "sales"}),
        store.update_connection(created.id, connection_uri=PG_URI.replace("shop", "shop2")),
    ]
    for conn in returned:
        assert conn.connection_uri.startswith("postgresql://app:*****@db.internal:5432/shop")
        assert "hunter2" not in conn.model_dump_json()
    assert created.connection_uri == masked
    assert created.dialect == "postgresql"
    assert created.schemas == ["public"]


@pytest.mark.parametrize(
    ("uri", "dialect"),
    [
        ("postgresql+psycopg2://u:p@h/db", "postgresql"),
        ("mysql+pymysql://u:p@h/db", "mysql"),
        ("mariadb://u:p@h/db", "mariadb"),
        ("sqlite:///shop.db", "sqlite"),
    ],
)
def test_dialect_is_detected_when_a_connection_is_added_or_changed(
    store: CatalogueStore, uri: str, dialect: str
) -> None:
    conn = store.add_connection(alias="a", connection_uri="duckdb:///x.duckdb")
    assert conn.dialect == "duckdb"
    assert store.update_connection(conn.id, connection_uri=uri).dialect == dialect
    assert store.add_connection(alias="b", connection_uri=uri).dialect == dialect


def test_taken_alias_is_duplicate_alias(store: CatalogueStore) -> None:
    store.add_connection(alias="shop", connection_uri="sqlite:///a.db")
    other = store.add_connection(alias="crm", connection_uri="sqlite:///b.db")
    with pytest.raises(DuplicateAlias) as on_add:
        store.add_connection(alias="shop", connection_uri="sqlite:///c.db")
    with pytest.raises(DuplicateAlias) as on_update:
        store.update_connection(other.id, alias="shop")
    assert on_add.value.http_status == on_update.value.http_status == 409
    assert [c.alias for c in store.list_connections()] == ["crm", "shop"]


def test_unknown_or_malformed_ids_are_not_found_or_invalid(store: CatalogueStore) -> None:
    with pytest.raises(ConnectionNotFound):
        store.get_connection(str(ObjectId()))
    with pytest.raises(ConnectionNotFound):
        store.get_connection("no-such-alias")
    with pytest.raises(TableDescriptionNotFound):
        store.get_description(str(ObjectId()))
    with pytest.raises(InvalidObjectId):
        store.get_description("not-an-id")


def test_deleting_a_connection_deletes_its_descriptions_only(store: CatalogueStore) -> None:
    doomed = store.add_connection(alias="doomed", connection_uri="sqlite:///a.db").id
    kept = store.add_connection(alias="kept", connection_uri="sqlite:///b.db").id
    refresh_with(store, doomed, public("orders", "users"))
    refresh_with(store, kept, public("orders"))
    store.delete_connection(doomed)
    assert store.descriptions.count_documents({"db_connection_id": doomed}) == 0
    assert statuses(store, kept) == {"orders": "NOT_SCANNED"}
    with pytest.raises(ConnectionNotFound):
        store.get_connection(doomed)


# -- descriptions through refreshes -------------------------------------------------------------


def test_restored_table_keeps_its_description_columns_and_metadata(store: CatalogueStore) -> None:
    cid = store.add_connection(alias="shop", connection_uri="sqlite:///a.db").id
    refresh_with(store, cid, public("orders", "users"))
    (orders,) = store.list_descriptions(cid, table_name="orders")
    people = {
        "description": "One row per order.",
        "columns": [{"name": "id", "description": "order number", "is_primary_key": True}],
        "metadata": {"owner": "sales"},
    }
    store.update_description(orders.id, people)

    refresh_with(store, cid, public("users"))
    assert statuses(store, cid) == {"orders": "DEPRECATED", "users": "NOT_SCANNED"}
    refresh_with(store, cid, public("orders", "users", kind=TableType.VIEW))

    restored = store.get_description(orders.id)
    assert restored.status == Status.NOT_SCANNED
    assert restored.table_type == TableType.VIEW
    assert restored.description == "One row per order."
    assert [(c.name, c.description) for c in restored.columns] == [("id", "order number")]
    assert restored.metadata == {"owner": "sales"}
    assert store.descriptions.count_documents({"db_connection_id": cid}) == 2


def test_restored_table_does_not_carry_the_error_of_a_scan_before_it_was_dropped(
    store: CatalogueStore,
) -> None:
    # error_message is "set when status is FAILED": a restored, NOT_SCANNED table has none.
    cid = str(ObjectId())
    refresh_with(store, cid, public("orders"))
    store.descriptions.update_one(
        {"db_connection_id": cid}, {"$set": {"status": "FAILED", "error_message": "timeout"}}
    )
    refresh_with(store, cid, public("other"))
    (gone,) = store.list_descriptions(cid, table_name="orders")
    assert (gone.status, gone.error_message) == (Status.DEPRECATED, "timeout")  # all kept
    refresh_with(store, cid, public("orders", "other"))
    (back,) = store.list_descriptions(cid, table_name="orders")
    assert (back.status, back.error_message) == (Status.NOT_SCANNED, None)


def test_expired_scan_lease_fails_with_a_message_and_a_live_one_is_left_alone(
    store: CatalogueStore,
) -> None:
    cid = str(ObjectId())
    refresh_with(store, cid, public("stuck", "busy"))
    store.descriptions.update_one(
        {"db_connection_id": cid, "table_name": "stuck"},
        {"$set": {"status": "SYNCHRONIZING", "scan_lease_expires_at": NOW - timedelta(minutes=5)}},
    )
    store.descriptions.update_one(
        {"db_connection_id": cid, "table_name": "busy"},
        {"$set": {"status": "SYNCHRONIZING", "scan_lease_expires_at": NOW + timedelta(minutes=5)}},
    )
    assert refresh_with(store, cid, public("stuck", "busy")) == 1
    (stuck,) = store.list_descriptions(cid, table_name="stuck")
    assert stuck.status == Status.FAILED
    assert "lease expired" in stuck.error_message
    assert statuses(store, cid)["busy"] == "SYNCHRONIZING"


# -- saving scan results ------------------------------------------------------------------------


def scanned(target, *names: str) -> TableScan:
    return TableScan(
        target, columns=[ColumnDescription(name=n, data_type="INTEGER") for n in names]
    )


def test_a_first_scan_is_saved_without_reading_rows_and_a_rescan_keeps_people_columns(
    counted,
) -> None:
    store, log = counted
    cid = str(ObjectId())
    refresh_with(store, cid, public("orders"))
    later = NOW + timedelta(hours=1)
    (target,) = store.claim_for_scan(cid, None, run_id="first", lease_expires_at=later)
    assert target.scanned_before is False
    log.clear()
    saved = store.save_scans("first", [scanned(target, "id", "total")], NOW)
    assert saved.scanned == 1
    assert log.on("table_descriptions") == ["update"]  # the row was not read first
    (row,) = store.list_descriptions(cid)
    assert row.status == Status.SCANNED and [c.name for c in row.columns] == ["id", "total"]

    store.update_description(row.id, {"columns.1.description": "in cents"})
    (target,) = store.claim_for_scan(cid, None, run_id="second", lease_expires_at=later)
    assert target.scanned_before is True
    log.clear()
    saved = store.save_scans("second", [scanned(target, "id", "total", "paid")], NOW)
    assert saved.scanned == 1 and len(saved.drift) == 1
    assert log.on("table_descriptions") == ["find", "update"]  # read: people's columns are merged
    (row,) = store.list_descriptions(cid)
    assert [(c.name, c.description) for c in row.columns] == [
        ("id", None),
        ("total", "in cents"),
        ("paid", None),
    ]


class EditAfterFirstRead:
    """The descriptions collection, with a person's edit landing just after the scan's read."""

    def __init__(self, collection: Any, edit: Any) -> None:
        self._collection, self._edit = collection, edit

    def find(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        docs = list(self._collection.find(*args, **kwargs))
        edit, self._edit = self._edit, None
        if edit is not None:
            edit()
        return docs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


def test_a_column_described_while_its_scan_is_saved_keeps_its_description(
    store: CatalogueStore,
) -> None:
    cid = str(ObjectId())
    refresh_with(store, cid, public("orders"))
    later = NOW + timedelta(hours=1)
    (target,) = store.claim_for_scan(cid, None, run_id="first", lease_expires_at=later)
    store.save_scans("first", [scanned(target, "id", "total")], NOW)
    (target,) = store.claim_for_scan(cid, None, run_id="second", lease_expires_at=later)
    edit = lambda: store.update_description(target.id, {"columns.1.description": "in cents"})  # noqa: E731
    store.descriptions = EditAfterFirstRead(store.descriptions, edit)

    saved = store.save_scans("second", [scanned(target, "id", "total", "paid")], NOW)

    assert saved.scanned == 1
    (row,) = store.list_descriptions(cid)
    assert row.status == Status.SCANNED
    assert [(c.name, c.description) for c in row.columns] == [
        ("id", None),
        ("total", "in cents"),
        ("paid", None),
    ]


def test_a_scan_saves_nothing_on_rows_a_newer_scan_took_over(store: CatalogueStore) -> None:
    cid = str(ObjectId())
    refresh_with(store, cid, public("orders", "users"))
    later = NOW + timedelta(hours=1)
    old = store.claim_for_scan(cid, None, run_id="old", lease_expires_at=later)
    store.claim_for_scan(cid, None, run_id="new", lease_expires_at=later)
    saved = store.save_scans("old", [scanned(t, "id") for t in old], NOW)
    assert (saved.scanned, saved.failed) == (0, 0)
    rows = store.descriptions.find({"db_connection_id": cid})
    assert {(r["status"], r["scan_run_id"], r.get("columns") or None) for r in rows} == {
        ("SYNCHRONIZING", "new", None)
    }


def test_a_claim_by_ids_holds_exactly_its_rows_found_through_the_status_index(counted) -> None:
    # SecantusDB uses the (connection, status) index only for a filter on exactly those fields:
    # with `scan_run_id` added, each read of a claim went through every row of the collection.
    store, log = counted
    cid = str(ObjectId())
    refresh_with(store, cid, public("a", "b", "c", "d"))
    ids = {d.table_name: d.id for d in store.list_descriptions(cid)}
    later = utcnow() + timedelta(hours=1)
    other = store.claim_for_scan(cid, [ids["c"], ids["d"]], run_id="other", lease_expires_at=later)
    log.clear()
    mine = store.claim_for_scan(cid, [ids["a"], ids["b"]], run_id="mine", lease_expires_at=later)
    assert [t.table_name for t in other] == ["c", "d"]
    assert [t.table_name for t in mine] == ["a", "b"]
    finds = [_filter(c) for n, t, c in log.commands if t == "table_descriptions" and n == "find"]
    assert finds == [{"db_connection_id": cid, "status": "SYNCHRONIZING"}] * 2

    log.clear()  # claimed again by its run (sync-schemas claims before the run's first step)
    again = store.claim_for_scan(cid, [ids["a"], ids["b"]], run_id="mine", lease_expires_at=later)
    assert again == mine
    assert "update" not in log.on("table_descriptions")  # held already: not written again
    rows = store.descriptions.find({"db_connection_id": cid}, {"table_name": 1, "scan_run_id": 1})
    assert {r["table_name"]: r["scan_run_id"] for r in rows} == {
        "a": "mine",
        "b": "mine",
        "c": "other",
        "d": "other",
    }


def test_descriptions_are_listed_sorted_by_schema_then_table(store: CatalogueStore) -> None:
    cid = store.add_connection(alias="shop", connection_uri="sqlite:///a.db").id
    listing = Listing(
        {
            "sales": [LiveTable("sales", n, TableType.TABLE) for n in ("b", "A")],
            "public": [LiveTable("public", n, TableType.TABLE) for n in ("users", "Users")],
        }
    )
    refresh_with(store, cid, listing)
    store.mark_refreshed(cid, NOW)
    found = store.list_descriptions(cid)
    assert [(d.schema_name, d.table_name) for d in found] == [
        ("public", "Users"),
        ("public", "users"),
        ("sales", "A"),
        ("sales", "b"),
    ]
    assert all(d.last_refreshed_at == NOW for d in found)


# Case, accents (composed and not), a 4-byte UTF-8 character after the last BMP one, punctuation.
AWKWARD_NAMES = ["b", "B", "a", "A", "ab", "a b", "a.b", "_", "1", "10", "2", "é", "e\u0301"]
AWKWARD_NAMES += ["ß", "ss", "日本", "\U0001f600", "\uffff", "z"]


def test_a_whole_connection_is_listed_in_utf8_order_whatever_its_statuses_and_inserts(
    counted,
) -> None:
    """Issue 18: on SecantusDB a whole connection is read by walking the unique index (no sort
    in Python, tdsync.store.descriptions): the rows must still come in the sort's exact order,
    which is UTF-8 byte order, with rows inserted out of order, of every status, between the
    rows of other connections, over several batches."""
    store, log = counted
    rng = random.Random(18)
    names = [(s, t) for s in AWKWARD_NAMES[:8] for t in AWKWARD_NAMES]
    cids = [str(ObjectId()) for _ in range(3)]
    docs = []
    for cid in cids:
        for schema, table in names:
            doc = new_description_doc(
                db_connection_id=cid,
                schema_name=schema,
                table_name=table,
                table_type=TableType.TABLE,
                now=NOW,
            )
            docs.append({**doc, "status": rng.choice(list(Status)).value})
    rng.shuffle(docs)
    store.descriptions.insert_many(docs)
    log.clear()

    listed = [
        (d["schema_name"], d["table_name"]) for d in store.description_docs(cids[1], batch_size=7)
    ]
    (find,) = [cmd for name, _, cmd in log.commands if name == "find"]

    assert listed == sorted(names, key=lambda n: (n[0].encode(), n[1].encode()))
    plain = store.descriptions.find(
        {"db_connection_id": cids[1]}, sort=[("schema_name", 1), ("table_name", 1)]
    )
    assert listed == [(d["schema_name"], d["table_name"]) for d in plain]  # what MongoDB gets
    if "secantusVersion" in store.client.admin.command("buildInfo"):
        assert find["filter"] == {"db_connection_id": {"$eq": cids[1]}}
        assert find["sort"] == {"db_connection_id": 1}
    else:
        assert find["sort"] == {"schema_name": 1, "table_name": 1}


def test_unreachable_mongo_is_storage_unavailable(tdsync_env) -> None:
    dead = CatalogueStore(
        mongo_client("mongodb://127.0.0.1:9/?retryWrites=false", timeout_ms=200),
        "tdsync",
        Cipher(tdsync_env["TDSYNC_ENCRYPTION_KEY"]),
    )
    with pytest.raises(StorageUnavailable) as err:
        dead.list_connections()
    assert err.value.http_status == 503


# -- the refresh properties, end to end on the real store -------------------------------------

SEED_STATUSES = list(Status)


@st.composite
def seeded_rows(draw) -> list[dict[str, Any]]:
    keys = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["public", "sales"]), st.sampled_from(["users", "Users", "v"])
            ),
            unique=True,
        )
    )
    rows = []
    for schema, table in keys:
        status = draw(st.sampled_from(SEED_STATUSES))
        rows.append(
            {
                "schema_name": schema,
                "table_name": table,
                "table_type": draw(st.sampled_from(list(TableType))).value,
                "status": status.value,
                "scan_lease_expires_at": draw(
                    st.sampled_from([NOW - timedelta(seconds=1), NOW + timedelta(seconds=1)])
                )
                if status == Status.SYNCHRONIZING
                else None,
                "description": draw(st.none() | st.sampled_from(["desc", "Customers who..."])),
                "metadata": draw(st.none() | st.just({"owner": "x"})),
                "columns": draw(st.sampled_from([[], [{"name": "id", "description": "key"}]])),
            }
        )
    return rows


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=seeded_rows(), listing=live_listings())
def test_refresh_on_the_real_store_keeps_descriptions_and_is_idempotent(
    store: CatalogueStore, rows: list[dict[str, Any]], listing: Listing
) -> None:
    cid = str(ObjectId())  # each example gets its own connection, so examples never interfere
    docs = []
    for row in rows:
        doc = new_description_doc(
            db_connection_id=cid,
            schema_name=row["schema_name"],
            table_name=row["table_name"],
            table_type=TableType(row["table_type"]),
            now=NOW - timedelta(days=1),
        )
        docs.append({**doc, **row})
    if docs:
        store.descriptions.insert_many(docs)
    listing = Listing({s: t for s, t in listing.schemas.items() if s in ("public", "sales")})
    if not listing.schemas:
        listing = Listing({"public": []})
    try:
        refresh_with(store, cid, listing)
    except Exception as exc:  # only the empty-schema refusal may stop a refresh
        assert exc.__class__.__name__ == "EmptyDatabase"
        after = list(store.descriptions.find({"db_connection_id": cid}).sort("_id", 1))
        assert after == sorted(docs, key=lambda d: d["_id"])  # nothing written
        return

    after = {
        (d["schema_name"], d["table_name"]): d
        for d in store.descriptions.find({"db_connection_id": cid})
    }
    live_keys = {(t.schema_name, t.table_name) for ts in listing.schemas.values() for t in ts or []}
    for doc in docs:
        now_doc = after[(doc["schema_name"], doc["table_name"])]
        assert now_doc["_id"] == doc["_id"]
        assert now_doc["description"] == doc["description"]
        assert now_doc["metadata"] == doc["metadata"]
        assert now_doc["columns"] == doc["columns"]
        if (doc["schema_name"], doc["table_name"]) not in live_keys:
            assert now_doc["status"] == "DEPRECATED"
        elif doc["status"] == "DEPRECATED":
            assert now_doc["status"] == "NOT_SCANNED"
        elif doc["status"] == "SYNCHRONIZING" and doc["scan_lease_expires_at"] <= NOW:
            assert now_doc["status"] == "FAILED" and now_doc["error_message"]
        else:
            assert now_doc["status"] == doc["status"]
    assert set(after) == {(d["schema_name"], d["table_name"]) for d in docs} | live_keys
    assert refresh_with(store, cid, listing) == 0  # a second refresh writes nothing
