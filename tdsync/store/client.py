"""Store layer: opening the catalogue store from settings (embedded SecantusDB or TDSYNC_MONGO_URI).

With the embedded store, every process watches the server through its client's heartbeats: when
one fails (the server crashed or was killed), the process restarts the server under the home's
lock (one process does, the others find it running), on the port it had, so every client of
every process reconnects by itself; should it have had to move, this process's stores follow it.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from pathlib import Path

from pymongo import MongoClient, monitoring

from tdsync.config.credentials import load_cipher
from tdsync.config.settings import Settings
from tdsync.domain.errors import TdsyncError
from tdsync.store import CatalogueStore, mongo_client
from tdsync.store.embedded import embedded_uri, restart_embedded

log = logging.getLogger("tdsync.store")

_lock = threading.Lock()
_stores: dict[tuple, CatalogueStore] = {}


@lru_cache(maxsize=16)
def _client(uri: str, embedded_home: Path | None = None) -> MongoClient:
    listeners = (_RestartEmbedded(embedded_home),) if embedded_home else ()
    return mongo_client(uri, event_listeners=listeners, embedded=embedded_home is not None)


class _RestartEmbedded(monitoring.ServerHeartbeatListener):
    """Restarts the home's embedded server when a heartbeat to it fails (a server stopped on
    purpose is left alone: restart_embedded), and moves this process's stores to its address."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._busy = threading.Lock()

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        # Not on the driver's monitor thread (a start takes seconds), and one attempt at a time:
        # heartbeats fail every half second while requests wait for the server.
        if self._busy.acquire(blocking=False):
            threading.Thread(target=self._restart, name="tdsync-store-restart", daemon=True).start()

    def _restart(self) -> None:
        try:
            uri = restart_embedded(self.home)
            if uri is not None:
                _follow(self.home, uri)
        except (TdsyncError, OSError) as exc:  # the next failed heartbeat tries again
            log.warning("the embedded store could not be restarted: %s", exc)
        finally:
            self._busy.release()


def _follow(home: Path, uri: str) -> None:
    """Rebind this process's shared stores of `home` to the embedded server at `uri`."""
    client = _client(uri, home)
    with _lock:
        moved = [
            store
            for (mongo_uri, store_home, *_), store in _stores.items()
            if mongo_uri is None and store_home == home and store.client is not client
        ]
        for store in moved:
            store.bind(client)
    if moved:
        log.warning("the embedded store moved to %s", uri.split("/?")[0])


def open_store(settings: Settings) -> CatalogueStore:
    """A store with its indexes in place; the encryption key is checked before anything else."""
    cipher = load_cipher(settings)
    if settings.embedded:
        client = _client(embedded_uri(settings.home), settings.home)
    else:
        client = _client(settings.mongo_uri)
    store = CatalogueStore(client, settings.mongo_db, cipher)
    store.ensure_indexes()
    store.verify_key()
    return store


def check_store_at_start(settings: Settings, *, timeout_ms: int = 2000) -> None:
    """Before a server starts serving: a missing or wrong encryption key is a ConfigurationError
    now. A MongoDB that does not answer within `timeout_ms` raises StorageUnavailable, which the
    caller may ignore (the API starts without its store and reports it on /health)."""
    cipher = load_cipher(settings)
    uri = settings.mongo_uri or embedded_uri(settings.home)
    client = mongo_client(uri, timeout_ms=timeout_ms, embedded=settings.embedded)
    try:
        CatalogueStore(client, settings.mongo_db, cipher).verify_key()
    finally:
        client.close()


def shared_store(settings: Settings) -> CatalogueStore:
    """One store per process and settings, sharing one connection pool per MongoDB."""
    key = (settings.mongo_uri, settings.home, settings.mongo_db, settings.encryption_key)
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = open_store(settings)
        return store
