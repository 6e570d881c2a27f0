"""SingleFlight: concurrent work for one key runs once and every caller gets its outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tdsync.api.single_flight import SingleFlight


def test_callers_for_one_key_share_one_run_and_its_result():
    async def scenario() -> tuple[list[str], int]:
        flights = SingleFlight()
        release = threading.Event()
        runs = 0

        def work() -> str:
            nonlocal runs
            runs += 1
            release.wait(timeout=10)
            return "listing"

        first = asyncio.ensure_future(flights.run("conn", work))
        await asyncio.sleep(0)  # let the first caller start its run
        assert flights.in_flight("conn")
        others = [asyncio.ensure_future(flights.run("conn", work)) for _ in range(4)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(first, *others)
        assert not flights.in_flight("conn")
        return results, runs

    results, runs = asyncio.run(scenario())

    assert results == ["listing"] * 5
    assert runs == 1


def test_a_failed_run_fails_every_caller_and_the_next_call_runs_again():
    async def scenario() -> tuple[list[BaseException | str], str]:
        flights = SingleFlight()
        release = threading.Event()
        calls = 0

        def work() -> str:
            nonlocal calls
            calls += 1
            if calls == 1:
                release.wait(timeout=10)
                raise RuntimeError("source unreachable")
            return "second run"

        waiting = [asyncio.ensure_future(flights.run("conn", work)) for _ in range(3)]
        await asyncio.sleep(0)
        release.set()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        return outcomes, await flights.run("conn", work)

    outcomes, after = asyncio.run(scenario())

    assert [str(o) for o in outcomes] == ["source unreachable"] * 3
    assert after == "second run"


def test_different_keys_run_side_by_side():
    async def scenario() -> list[str]:
        flights = SingleFlight()
        both_started = threading.Barrier(2, timeout=10)

        def work(name: str) -> str:
            both_started.wait()  # only passes if the two runs overlap
            return name

        return await asyncio.gather(
            flights.run("a", lambda: work("a")), flights.run("b", lambda: work("b"))
        )

    assert asyncio.run(scenario()) == ["a", "b"]


def test_a_cancelled_caller_does_not_cancel_the_shared_run():
    async def scenario() -> str:
        flights = SingleFlight()
        release = threading.Event()

        def work() -> str:
            release.wait(timeout=10)
            return "done"

        leaver = asyncio.ensure_future(flights.run("conn", work))
        stayer = asyncio.ensure_future(flights.run("conn", work))
        await asyncio.sleep(0)
        leaver.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaver
        release.set()
        return await stayer

    assert asyncio.run(scenario()) == "done"
