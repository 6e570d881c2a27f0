"""What one measurement counts: SQL statements sent to sources, store round trips, peak memory.

- Statements: a `before_cursor_execute` listener on SQLAlchemy's Engine class (every engine of
  the process), split by engine: the Dagster instance's own SQLite storage (its event log and
  run records) apart from the sources. The dialect's
  first-connect probes (server version and the like) bypass the listener.
- Store round trips: a pymongo CommandListener (every client of the process, registered before
  the first client is made); every command sent is one round trip.
- Garbage collection: time spent in the collector and the number of full collections.
- Memory: the process's peak resident set (getrusage ru_maxrss). One measurement runs per fresh
  process, so the peak is that measurement's, on top of what the imports already hold.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from collections import Counter
from typing import Any

import sqlalchemy as sa
from pymongo import monitoring
from sqlalchemy.engine import Engine

WRITES = {"insert", "update", "delete", "findAndModify"}
DESCRIPTIONS = "table_descriptions"


class Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.statements = 0
        self.dagster_statements = 0
        self.gc_s = 0.0
        self.gc_full = 0
        self.store: Counter[tuple[str, str]] = Counter()

    def summary(self) -> dict[str, Any]:
        writes = sum(n for (cmd, _), n in self.store.items() if cmd in WRITES)
        description_writes = sum(
            n for (cmd, coll), n in self.store.items() if cmd in WRITES and coll == DESCRIPTIONS
        )
        return {
            "statements": self.statements,
            "dagster_statements": self.dagster_statements,
            "gc_s": self.gc_s,
            "gc_full_collections": self.gc_full,
            "round_trips": sum(self.store.values()),
            "store_writes": writes,
            "description_writes": description_writes,
            "store_commands": {f"{cmd} {coll}".strip(): n for (cmd, coll), n in self.store.items()},
        }


COUNTERS = Counters()


class _StoreListener(monitoring.CommandListener):
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        target = event.command.get("collection") if name == "getMore" else event.command.get(name)
        COUNTERS.store[(name, target if isinstance(target, str) else "")] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _is_dagster_storage(engine: Engine) -> bool:
    database = str(engine.url.database or "")
    home = os.environ.get("DAGSTER_HOME")
    return database.startswith(("file:events-", "file:runs-", "file:schedules-")) or bool(
        home and database.startswith(home)
    )


def _on_statement(conn, cursor, statement, parameters, context, executemany) -> None:
    if _is_dagster_storage(conn.engine):
        COUNTERS.dagster_statements += 1
    else:
        COUNTERS.statements += 1


_gc_started = 0.0


def _on_gc(phase: str, info: dict) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    else:
        COUNTERS.gc_s += time.perf_counter() - _gc_started
        COUNTERS.gc_full += info["generation"] == 2


def install() -> Counters:
    """Register the listeners process-wide; call before any MongoClient is made."""
    monitoring.register(_StoreListener())
    sa.event.listen(Engine, "before_cursor_execute", _on_statement)
    gc.callbacks.append(_on_gc)
    return COUNTERS


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
