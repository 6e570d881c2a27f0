"""The streamed lists read the store ahead of the encoding (tdsync.api.streaming.read_ahead)."""

from __future__ import annotations

import threading
import time

import pytest
from pymongo.errors import AutoReconnect

from tdsync.api.streaming import read_ahead


def test_every_item_comes_once_in_order_across_batches() -> None:
    assert list(read_ahead(iter(range(1234)), batch=100, depth=2)) == list(range(1234))
    assert list(read_ahead(iter([]))) == []


def test_a_failure_of_the_reading_is_raised_after_what_was_read_before_it() -> None:
    def docs():
        yield from range(10)
        raise AutoReconnect("store went away")

    got: list[int] = []
    with pytest.raises(AutoReconnect, match="store went away"):
        for item in read_ahead(docs(), batch=3):
            got.append(item)
    assert got == list(range(10))


def test_a_caller_that_stops_early_stops_the_reading() -> None:
    read: list[int] = []

    def docs():
        for i in range(1_000_000):
            read.append(i)
            yield i

    items = read_ahead(docs(), batch=10, depth=2)
    assert next(items) == 0
    items.close()
    time.sleep(1.2)  # the reader notices within its 0.5 s put timeout
    assert not any(t.name == "tdsync-read-ahead" and t.is_alive() for t in threading.enumerate())
    assert len(read) < 100  # at most depth + 1 batches were read ahead
