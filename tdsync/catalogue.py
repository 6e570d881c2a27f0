"""Opening the catalogue store from settings (embedded SecantusDB or TDSYNC_MONGO_URI)."""

from __future__ import annotations

import threading
from functools import lru_cache

from pymongo import MongoClient

from tdsync.config import Settings
from tdsync.credentials import load_cipher
from tdsync.embedded import embedded_uri
from tdsync.store import CatalogueStore, mongo_client

_lock = threading.Lock()
_stores: dict[tuple, CatalogueStore] = {}


@lru_cache(maxsize=16)
def _client(uri: str) -> MongoClient:
    return mongo_client(uri)


def open_store(settings: Settings | None = None) -> CatalogueStore:
    """A store with its indexes in place; the encryption key is checked before anything else."""
    settings = settings or Settings.from_env()
    cipher = load_cipher(settings)
    uri = settings.mongo_uri or embedded_uri(settings.home)
    store = CatalogueStore(_client(uri), settings.mongo_db, cipher)
    store.ensure_indexes()
    store.verify_key()
    return store


def check_store_at_start(settings: Settings, *, timeout_ms: int = 2000) -> None:
    """Before a server starts serving: a missing or wrong encryption key is a ConfigurationError
    now. A MongoDB that does not answer within `timeout_ms` raises StorageUnavailable, which the
    caller may ignore (the API starts without its store and reports it on /health)."""
    cipher = load_cipher(settings)
    uri = settings.mongo_uri or embedded_uri(settings.home)
    client = mongo_client(uri, timeout_ms=timeout_ms)
    try:
        CatalogueStore(client, settings.mongo_db, cipher).verify_key()
    finally:
        client.close()


def shared_store(settings: Settings | None = None) -> CatalogueStore:
    """One store per process and settings, sharing one connection pool per MongoDB."""
    settings = settings or Settings.from_env()
    key = (settings.mongo_uri, settings.home, settings.mongo_db, settings.encryption_key)
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = open_store(settings)
        return store
