"""Shell (HTTP): Lists of table descriptions answered as a stream: the JSON array is written while the store's
cursor is read, so the first byte leaves early and the API's memory does not grow with the
catalogue (issue 18: 100,000 descriptions are a 41 MB answer).

Everything that can fail before the first byte (the connection, the store) is found out first and
answered with its status and SPEC error body. Should the store fail once the answer has started,
the status line is already sent: the connection is then closed before the closing `]`, so the
client sees a cut body (an incomplete chunked transfer), never complete-looking JSON
(tdsync.api.errors.CatchAllMiddleware logs the failure and ends the response unfinished).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tdsync.config.credentials import scrub
from tdsync.domain.description_json import json_array_chunks
from tdsync.domain.errors import TdsyncError
from tdsync.store import STORE_FAILURES, CatalogueStore, storage_errors, storage_unavailable

log = logging.getLogger("tdsync.api")

# Documents per store round trip: a few MB of the API's memory at most, and few enough round
# trips (50 for 100,000 rows) that they cost nothing next to the reading itself.
BATCH_SIZE = 2_000


async def streamed_descriptions(
    store: CatalogueStore, connection_id: str, *, status_code: int = 200, **filters: Any
) -> StreamingResponse:
    """The connection's descriptions (tdsync.store's `description_docs` filters and pages) as a
    streamed JSON array, byte for byte what `list[TableDescription]` serializes to."""
    first, rest = await run_in_threadpool(_start, store, connection_id, filters)
    return StreamingResponse(
        _chunks(first, rest, connection_id), status_code=status_code, media_type="application/json"
    )


def _start(
    store: CatalogueStore, connection_id: str, filters: dict[str, Any]
) -> tuple[bytes, Iterator[bytes]]:
    refreshed = store.refreshed_at(connection_id)
    cursor = store.description_docs(connection_id, batch_size=BATCH_SIZE, **filters)
    chunks = json_array_chunks(cursor, refreshed)
    with storage_errors():  # the first batch is read here: a store down is still a 503
        first = next(chunks)
    return first, chunks


class AnswerCut(Exception):
    """A streamed answer failed after its first byte (already logged): the server is to close
    the connection (tdsync.api.errors.CatchAllMiddleware)."""


def _chunks(first: bytes, rest: Iterator[bytes], connection_id: str) -> Iterator[bytes]:
    yield first
    sent = len(first)
    try:
        for chunk in rest:
            yield chunk
            sent += len(chunk)
    except Exception as exc:
        error = storage_unavailable(exc) if isinstance(exc, STORE_FAILURES) else exc
        what = f"[{error.error_code}] {error.message}" if isinstance(error, TdsyncError) else ""
        log.error(
            "the descriptions of connection %s were cut after %d bytes: %s %s",
            connection_id,
            sent,
            what or type(exc).__name__,
            scrub(str(getattr(error, "detail", None) or exc))[:300],
        )
        raise AnswerCut from None
