"""Shell (HTTP): What the routes share: settings, the catalogue store.

The Dagster instance is `tdsync.defs.runs.instance(settings)`, one per process and home, owned there.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated

from fastapi import Depends, Request

from tdsync.config.settings import Settings
from tdsync.domain.errors import TdsyncError
from tdsync.store import CatalogueStore, object_id
from tdsync.store.client import shared_store

# How long a failure to open the store is reported as is, before the next request tries again.
STORE_RETRY_S = 1.0


class ApiState:
    """Per-app state. The store opens lazily: the API starts (and answers 503 from /health)
    even when MongoDB is down, and reconnects when it is back."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store_lock = threading.Lock()
        self._store: CatalogueStore | None = None
        self._store_failure: tuple[float, TdsyncError] | None = None

    def store(self) -> CatalogueStore:
        if self._store is not None:
            return self._store
        with self._store_lock:
            if self._store is not None:
                return self._store
            # Opening waits out the driver's server-selection timeout when MongoDB is down;
            # requests that queued behind a failed attempt share its outcome instead of each
            # waiting the full timeout again in turn.
            if self._store_failure and time.monotonic() - self._store_failure[0] < STORE_RETRY_S:
                raise self._store_failure[1]
            try:
                self._store = shared_store(self.settings)
            except TdsyncError as exc:
                self._store_failure = (time.monotonic(), exc)
                raise
            return self._store


def api_state(request: Request) -> ApiState:
    return request.app.state.tdsync


def catalogue_store(request: Request) -> CatalogueStore:
    return api_state(request).store()


State = Annotated[ApiState, Depends(api_state)]
Store = Annotated[CatalogueStore, Depends(catalogue_store)]


def path_id(value: str, *, what: str) -> str:
    """A path id as canonical ObjectId hex; malformed -> 400 invalid_object_id."""
    return str(object_id(value, what=what))
