"""Per-connection single flight: concurrent refreshes of one connection share one run.

A request that arrives while a refresh of its connection is running waits for that run and
answers with its result instead of starting a second run. Lives on the event loop, so the
bookkeeping needs no lock; the work itself runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio.to_thread


class SingleFlight:
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[Any]] = {}

    async def run(self, key: str, work: Callable[[], Any]) -> Any:
        """Run `work` in a thread unless a run for `key` is in flight; either way, its result."""
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(anyio.to_thread.run_sync(work))
            self._running[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        # Shielded: a client that hangs up must not cancel the run the others wait for.
        return await asyncio.shield(task)

    def in_flight(self, key: str) -> bool:
        return key in self._running

    def _forget(self, key: str, done: asyncio.Task[Any]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter has its own copy of the outcome
