"""Services layer: Progress of a scan run for callers in the same process (the CLI's progress bar).

A scan run executes in the caller's process (tdsync.defs.runs.scan), so the op can hand its progress
to a callback registered under the run id; nothing goes through Dagster for it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class ScanProgress:
    run_id: str
    total: int
    done: int  # scanned + failed
    failed: int
    table: str | None = None  # the table just finished, "schema.table"


ProgressCallback = Callable[[ScanProgress], None]

_lock = threading.Lock()
_listeners: dict[str, ProgressCallback] = {}


@contextmanager
def listening(run_id: str, callback: ProgressCallback | None) -> Iterator[None]:
    if callback is None:
        yield
        return
    with _lock:
        _listeners[run_id] = callback
    try:
        yield
    finally:
        with _lock:
            _listeners.pop(run_id, None)


def report(progress: ScanProgress) -> None:
    with _lock:
        callback = _listeners.get(progress.run_id)
    if callback is not None:
        # A broken progress bar must not fail the scan.
        with contextlib.suppress(Exception):
            callback(progress)
