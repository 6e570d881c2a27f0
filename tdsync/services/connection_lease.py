"""Services layer: At most one refresh or scan per connection at a time, across processes: the connection lease.

Whoever runs a refresh or scan (the API and CLI through tdsync.defs.runs, a run launched from the
Dagster UI or a schedule inside its first op) first takes the connection's lease in the store,
keyed by its Dagster run id. A second caller waits, bounded, for the holder to finish. A caller
that asked to *join* (a refresh waiting on a refresh) takes the holder's result instead of doing
the same work again. The lease is renewed while its process lives; a crashed holder's expires.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tdsync.domain.errors import ConnectionBusy, StorageUnavailable
from tdsync.domain.models import utcnow
from tdsync.store import CatalogueStore

log = logging.getLogger("tdsync.services.connection_lease")

LEASE_TTL_S = 120.0
RENEW_EVERY_S = 30.0
POLL_S = 0.2
RELEASE_RETRY_S = 0.5  # a release that met the store down is retried this often

_renewers: dict[tuple[str, str], threading.Event] = {}
_renewers_lock = threading.Lock()


@dataclass(frozen=True)
class Joined:
    """The finished run a waiting caller joined, and the outcome it recorded."""

    run_id: str
    outcome: Any


def acquire(
    store: CatalogueStore,
    connection_id: str,
    *,
    holder: str,
    kind: str,
    wait_s: float,
    join: bool = False,
    on_wait: Callable[[dict[str, Any]], None] | None = None,
) -> Joined | None:
    """Take the connection's lease (None), or the result of the run of `kind` it joined.

    Raises ConnectionBusy when another run still holds the lease after `wait_s` seconds.
    """
    if holds(connection_id, holder):
        return None  # this process took it for the same run already (tdsync.defs.runs, then its op)
    deadline = time.monotonic() + wait_s
    joined: str | None = None
    announced: str | None = None
    while True:
        if joined is not None:
            last = (store.connection_lease(connection_id) or {}).get("last") or {}
            if last.get("holder") == joined:
                if last.get("succeeded") and last.get("outcome") is not None:
                    return Joined(joined, last["outcome"])
                joined = None  # it failed: do the work ourselves
        if store.acquire_connection_lease(
            connection_id, holder=holder, kind=kind, ttl_s=LEASE_TTL_S, now=utcnow()
        ):
            keep_renewed(store, connection_id, holder)
            return None
        current = store.connection_lease(connection_id) or {}
        other = current.get("holder")
        if other and other != announced:
            announced = other
            if on_wait is not None:
                on_wait(current)
            if join and current.get("kind") == kind:
                joined = other
        if time.monotonic() >= deadline:
            raise ConnectionBusy(
                f"connection {connection_id} is busy: a {current.get('kind') or 'run'} "
                f"({other}) is still running after {wait_s:.0f} s of waiting",
                {"db_connection_id": connection_id, "run_id": other, "kind": current.get("kind")},
            )
        time.sleep(POLL_S)


def release(store: CatalogueStore, holder: str, *, succeeded: bool, outcome: Any = None) -> int:
    """Release the leases `holder` has (a no-op when already released); returns how many.

    With the store down, this raises StorageUnavailable and keeps trying in the background until
    the store is back: the lease must not hold up the connection's next run until it expires,
    when this process is alive and knows it is done.
    """
    _stop_renewing(holder)
    try:
        return store.release_connection_leases(
            holder, succeeded=succeeded, outcome=outcome, now=utcnow()
        )
    except StorageUnavailable:
        threading.Thread(
            target=_release_when_back,
            args=(store, holder, succeeded, outcome),
            name=f"lease-release-{holder}",
            daemon=True,
        ).start()
        raise


def _release_when_back(store: CatalogueStore, holder: str, succeeded: bool, outcome: Any) -> None:
    deadline = time.monotonic() + LEASE_TTL_S  # by then the lease has expired anyway
    while time.monotonic() < deadline:
        time.sleep(RELEASE_RETRY_S)
        try:
            store.release_connection_leases(
                holder, succeeded=succeeded, outcome=outcome, now=utcnow()
            )
            return
        except StorageUnavailable:
            continue


@contextmanager
def held(
    store: CatalogueStore,
    connection_id: str,
    *,
    holder: str,
    kind: str,
    wait_s: float,
) -> Iterator[None]:
    """Hold the lease for the block (waiting first, at most `wait_s`, for another holder)."""
    acquire(store, connection_id, holder=holder, kind=kind, wait_s=wait_s)
    succeeded = False
    try:
        yield None
        succeeded = True
    finally:
        # The run's own hooks usually released it already, with its outcome; this covers a run
        # that never got that far (or whose hooks ran in another process).
        if holds(connection_id, holder):
            release(store, holder, succeeded=succeeded)


def holds(connection_id: str, holder: str) -> bool:
    """Whether this process holds (and keeps renewing) the connection's lease for `holder`."""
    with _renewers_lock:
        return (connection_id, holder) in _renewers


def keep_renewed(store: CatalogueStore, connection_id: str, holder: str) -> None:
    """Renew the lease from this process until it is released (or the process dies)."""
    key = (connection_id, holder)
    with _renewers_lock:
        if key in _renewers:
            return
        stop = _renewers[key] = threading.Event()
    threading.Thread(
        target=_renew,
        args=(store, connection_id, holder, stop),
        name=f"lease-{holder}",
        daemon=True,
    ).start()


def _stop_renewing(holder: str) -> None:
    with _renewers_lock:
        for key in [key for key in _renewers if key[1] == holder]:
            _renewers.pop(key).set()


def _renew(store: CatalogueStore, connection_id: str, holder: str, stop: threading.Event) -> None:
    try:
        while not stop.wait(RENEW_EVERY_S):
            try:
                if not store.renew_connection_lease(
                    connection_id, holder=holder, ttl_s=LEASE_TTL_S, now=utcnow()
                ):
                    return
            except Exception as exc:  # a Mongo blip: try again at the next period
                log.warning("renewing the lease of %s failed: %s", connection_id, exc)
    finally:
        with _renewers_lock:
            if _renewers.get((connection_id, holder)) is stop:
                del _renewers[(connection_id, holder)]
