"""In-process single-flight among threads."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

import pytest

from fleetcache.core.singleflight import AsyncSingleFlight, SingleFlight
from fleetcache.errors import WaitTimeout
from fleetcache.testing.waiting import wait_until


def joined(*threads: threading.Thread) -> bool:
    """Join ``threads`` (5 s each); True when every one of them has ended."""
    for t in threads:
        t.join(5)
    return not any(t.is_alive() for t in threads)


def test_concurrent_callers_share_one_call() -> None:
    """Ten threads on one key run fn once and all get its value."""
    sf = SingleFlight()
    started = threading.Event()
    release = threading.Event()
    calls = []

    def fn() -> str:
        calls.append(1)
        started.set()
        release.wait(5)
        return "v"

    results: list[tuple[str, bool]] = []
    leader = threading.Thread(target=lambda: results.append(sf.run("k", fn, 5)))
    leader.start()
    assert started.wait(5)
    followers = [threading.Thread(target=lambda: results.append(sf.run("k", fn, 5)))
                 for _ in range(9)]
    for t in followers:
        t.start()
    wait_until(lambda: sf.waiting("k") == 9, 5, "all 9 followers to join the flight")
    assert calls == [1]  # the followers joined while fn was still running, and ran nothing
    release.set()
    assert joined(leader, *followers)
    assert len(calls) == 1
    assert sorted(results) == [("v", False)] + [("v", True)] * 9
    assert len(sf) == 0


def test_exception_reaches_every_waiter() -> None:
    """The runner's exception object is raised to the runner and to each waiter."""
    sf = SingleFlight()
    started = threading.Event()
    release = threading.Event()
    err = RuntimeError("upstream down")
    calls = []

    def fn() -> str:
        calls.append(1)
        started.set()
        release.wait(5)
        raise err

    seen: dict[str, BaseException] = {}

    def call(who: str) -> None:
        try:
            sf.run("k", fn, 5)
        except RuntimeError as e:
            seen[who] = e

    t1 = threading.Thread(target=call, args=("runner",))
    t1.start()
    assert started.wait(5)
    t2 = threading.Thread(target=call, args=("waiter",))
    t2.start()
    wait_until(lambda: sf.waiting("k") == 1, 5, "the second caller to join the flight")
    release.set()
    assert joined(t1, t2)
    assert calls == [1]
    assert set(seen) == {"runner", "waiter"}
    assert seen["runner"] is err
    assert seen["waiter"] is err
    assert len(sf) == 0


def test_waiter_times_out() -> None:
    """A waiter gives up with WaitTimeout after its timeout; the flight itself goes on."""
    sf = SingleFlight()
    started = threading.Event()
    release = threading.Event()
    results: list[tuple[int, bool]] = []

    def fn() -> int:
        started.set()
        release.wait(5)
        return 1

    t = threading.Thread(target=lambda: results.append(sf.run("k", fn, 5)))
    t.start()
    assert started.wait(5)
    begin = time.monotonic()
    with pytest.raises(WaitTimeout):
        sf.run("k", lambda: 2, 0.05)
    assert time.monotonic() - begin >= 0.05 * 0.9  # it did wait, not fail at once
    assert t.is_alive()  # the runner was still running: the timeout was the waiter's own
    release.set()
    assert joined(t)
    assert results == [(1, False)]
    assert len(sf) == 0


def test_base_exception_lets_a_waiter_run_instead() -> None:
    """A runner killed by a BaseException does not pass it on: a waiter runs fn itself."""
    sf = SingleFlight()
    started = threading.Event()
    release = threading.Event()
    results: list[tuple[int, bool]] = []
    runner_died: list[BaseException] = []
    waiter_calls = []

    def dying() -> int:
        started.set()
        release.wait(5)
        raise KeyboardInterrupt

    def runner() -> None:
        try:
            sf.run("k", dying, 5)
        except KeyboardInterrupt as e:
            runner_died.append(e)

    def own() -> int:
        waiter_calls.append(1)
        return 7

    t = threading.Thread(target=runner)
    t.start()
    assert started.wait(5)
    w = threading.Thread(target=lambda: results.append(sf.run("k", own, 5)))
    w.start()
    # Only a waiter parked on the dying flight proves the claim: one arriving after the
    # flight ended would run fn itself anyway.
    wait_until(lambda: sf.waiting("k") == 1, 5, "the waiter to join the dying flight")
    assert waiter_calls == []
    release.set()
    assert joined(t, w)
    assert len(runner_died) == 1  # the runner itself still got its KeyboardInterrupt
    assert results == [(7, False)]
    assert waiter_calls == [1]
    assert len(sf) == 0


def test_settle_releases_waiters_before_the_runner_returns() -> None:
    """settle() wakes a parked waiter with the value while the runner is still cleaning up."""
    sf = SingleFlight()
    started = threading.Event()
    go = threading.Event()
    cleanup = threading.Event()
    results: list[tuple[str, bool]] = []
    shared: list[tuple[str, bool]] = []

    def fn() -> str:
        started.set()
        go.wait(5)
        sf.settle("k", "v")
        cleanup.wait(5)  # e.g. releasing a lease
        return "v"

    runner = threading.Thread(target=lambda: results.append(sf.run("k", fn, 5)))
    runner.start()
    assert started.wait(5)
    waiter = threading.Thread(target=lambda: shared.append(sf.run("k", lambda: "other", 5)))
    waiter.start()
    wait_until(lambda: sf.waiting("k") == 1, 5, "the waiter to join the flight")
    go.set()
    assert joined(waiter)  # woken by settle(): cleanup is not set yet
    assert shared == [("v", True)]
    assert runner.is_alive()
    assert results == []
    cleanup.set()
    assert joined(runner)
    assert results == [("v", False)]
    assert len(sf) == 0


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds; fail after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


def test_async_single_flight_shares_settles_and_survives_cancelled_waiters() -> None:
    """Tasks coalesce on one call; a cancelled waiter leaves the others and the runner
    alone; settle() releases the waiters before the runner returns."""
    async def body() -> None:
        sf = AsyncSingleFlight()
        calls = 0
        entered = asyncio.Event()
        go = asyncio.Event()
        cleanup = asyncio.Event()

        async def fn() -> str:
            nonlocal calls
            calls += 1
            entered.set()
            await go.wait()
            sf.settle("k", "v")
            await cleanup.wait()
            return "v"

        runner = asyncio.create_task(sf.run("k", fn, 5))
        async with asyncio.timeout(5):
            await entered.wait()
        waiters = [asyncio.create_task(sf.run("k", fn, 5)) for _ in range(5)]
        await until(lambda: sf.waiting("k") == 5, "5 waiters on the flight")

        waiters[0].cancel()
        async with asyncio.timeout(5):
            with contextlib.suppress(asyncio.CancelledError):
                await waiters[0]
        assert waiters[0].cancelled()
        assert sf.waiting("k") == 4  # the cancelled waiter left; the others still wait
        assert not any(w.done() for w in waiters[1:])
        assert not runner.done()

        go.set()
        async with asyncio.timeout(5):
            results = await asyncio.gather(*waiters[1:])
        assert results == [("v", True)] * 4
        assert not runner.done()  # settled: the waiters did not wait for the clean-up
        cleanup.set()
        async with asyncio.timeout(5):
            assert await runner == ("v", False)
        assert calls == 1
        assert len(sf) == 0

    asyncio.run(body())
