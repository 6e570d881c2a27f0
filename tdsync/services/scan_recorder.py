"""Services layer: Recording a scan run's results as they arrive: batched saves, lease renewal, progress.

Results are saved in batches (every `save_every` results, or `save_after_s` after the oldest
unsaved one), so a run killed half-way keeps what it finished. A background thread does the saving
and renews the lease of the rows still held: store round trips overlap with the scan's own work,
and go on while the scan waits on a slow table. Logging and progress callbacks stay on the
caller's thread; a failed save is raised there.

The lease is renewed only when a table finished since the last renewal: renewing proves that the
scan works, not merely that its process lives, so a scan stuck for a whole lease loses its rows
to the next refresh or scan (FAILED, "lease expired") however long its process hangs on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tdsync.domain.models import utcnow
from tdsync.domain.scan_model import ScanTarget, TableScan
from tdsync.services.scan_progress import ScanProgress, report
from tdsync.store import CatalogueStore, lease_expiry

SHOWN = 50  # tables listed in run metadata


class ScanRecorder:
    def __init__(
        self,
        store: CatalogueStore,
        connection_id: str,
        run_id: str,
        total: int,
        *,
        lease_s: float,
        log: Callable[[str], None],
        warn: Callable[[str], None],
        save_every: int = 50,
        save_after_s: float = 2.0,
        log_every_s: float = 5.0,
    ) -> None:
        self.store, self.connection_id, self.run_id = store, connection_id, run_id
        self.total = total
        self.lease_s, self.log, self.warn = lease_s, log, warn
        self.save_every, self.save_after_s, self.log_every_s = save_every, save_after_s, log_every_s
        self.started = time.monotonic()
        self.done = self.scanned = self.failed = self.degraded = 0
        self.drifted: list[tuple[ScanTarget, Any]] = []
        self.failures: dict[str, str] = {}
        self._unsaved: list[TableScan] = []
        self._unsaved_failed = 0  # failures in _unsaved (counted, not summed at every result)
        self._oldest_unsaved = 0.0
        self._logged_at = self._renewed_at = self.started
        self._done_at_renewal = 0
        self._lock = threading.Lock()  # the buffer and counters
        self._saving = threading.Lock()  # one store write at a time, in order
        self._stop = threading.Event()
        self._wake = threading.Event()  # a full batch is waiting
        self._error: Exception | None = None
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"tdsync-scan-heartbeat-{run_id[:8]}", daemon=True
        )

    def __enter__(self) -> ScanRecorder:
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._wake.set()
        self._heartbeat.join()

    def add(self, result: TableScan) -> None:
        self._raise_failed_save()
        name = result.target.qualified_name
        with self._lock:
            if not self._unsaved:
                self._oldest_unsaved = time.monotonic()
            self._unsaved.append(result)
            self._unsaved_failed += not result.ok
            self.done += 1
            if len(self._unsaved) >= self.save_every:
                self._wake.set()
            failed_so_far = self.failed + self._unsaved_failed
        if not result.ok:
            if len(self.failures) < 20:
                self.warn(f"{name} failed: {result.error}")
            if len(self.failures) < SHOWN:
                self.failures[name] = result.error or ""
        elif result.notes:
            self.degraded += 1
            self.log(f"{name}: {'; '.join(result.notes)}")
        now = time.monotonic()
        if now - self._logged_at >= self.log_every_s:
            self._logged_at = now
            self.log(
                f"scanned {self.done} of {self.total} tables "
                f"({failed_so_far} failed, {now - self.started:.1f} s)"
            )
        report(ScanProgress(self.run_id, self.total, self.done, failed_so_far, name))

    def save(self) -> None:
        """Write what is buffered now (SCANNED or FAILED rows, drift), on this thread."""
        with self._saving:
            with self._lock:
                batch, self._unsaved = self._unsaved, []
                batch_failed, self._unsaved_failed = self._unsaved_failed, 0
            if not batch:
                return
            try:
                saved = self.store.save_scans(self.run_id, batch, utcnow())
            except BaseException:
                with self._lock:  # kept for the next attempt; rows saved already are skipped
                    self._unsaved[:0] = batch
                    self._unsaved_failed += batch_failed
                raise
            with self._lock:
                self.scanned += saved.scanned
                self.failed += saved.failed
                self.drifted.extend(saved.drift)

    def _raise_failed_save(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _beat(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                now = time.monotonic()
                with self._lock:
                    due = len(self._unsaved) >= self.save_every or (
                        self._unsaved and now - self._oldest_unsaved >= self.save_after_s
                    )
                if due:
                    self.save()
                if now - self._renewed_at >= max(1.0, self.lease_s / 3):
                    done = self.done
                    if done > self._done_at_renewal:
                        expiry = lease_expiry(utcnow(), self.lease_s)
                        self.store.renew_scan_lease(self.connection_id, self.run_id, expiry)
                        self._done_at_renewal = done
                    self._renewed_at = now
            except Exception as exc:  # the store is down: raised on the caller's thread
                self._error = exc

    def summary(self) -> dict[str, Any]:
        return {
            "tables": self.total,
            "scanned": self.scanned,
            "failed": self.failed,
            "drift": len(self.drifted),
            "duration_s": round(time.monotonic() - self.started, 3),
        }

    def drift_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "table": target.qualified_name,
                "added": change.added,
                "removed": change.removed,
                "type_changed": change.type_changed,
            }
            for target, change in self.drifted[:SHOWN]
        ]
