"""In-process single-flight among threads."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from fleetcache.core.singleflight import AsyncSingleFlight, SingleFlight
from fleetcache.errors import WaitTimeout


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
    while True:  # wait until every follower is parked on the flight
        if sum(1 for t in followers if t.is_alive()) == 9:
            break
    release.set()
    for t in [leader, *followers]:
        t.join(5)
    assert len(calls) == 1
    assert sorted(results) == [("v", False)] + [("v", True)] * 9
    assert len(sf) == 0


def test_exception_reaches_every_waiter() -> None:
    """The runner's exception object is raised to the runner and to each waiter."""
    sf = SingleFlight()
    started = threading.Event()
    release = threading.Event()
    err = RuntimeError("upstream down")

    def fn() -> str:
        started.set()
        release.wait(5)
        raise err

    seen: list[BaseException] = []

    def call() -> None:
        try:
            sf.run("k", fn, 5)
        except RuntimeError as e:
            seen.append(e)

    t1 = threading.Thread(target=call)
    t1.start()
    assert started.wait(5)
    t2 = threading.Thread(target=call)
    t2.start()
    release.set()
    t1.join(5)
    t2.join(5)
    assert seen == [err, err] or seen == [err]  # t2 may arrive after the flight ended
    assert len(sf) == 0


def test_waiter_times_out() -> None:
    """A waiter gives up with WaitTimeout after its timeout."""
    sf = SingleFlight()
    started = threading.Event()
    release = threading.Event()

    def fn() -> int:
        started.set()
        release.wait(5)
        return 1

    t = threading.Thread(target=lambda: sf.run("k", fn, 5))
    t.start()
    assert started.wait(5)
    with pytest.raises(WaitTimeout):
        sf.run("k", fn, 0.05)
    release.set()
    t.join(5)


def test_base_exception_lets_a_waiter_run_instead() -> None:
    """A runner killed by a BaseException does not pass it on: a waiter runs fn itself."""
    sf = SingleFlight()
    started = threading.Event()
    release = threading.Event()
    results: list[tuple[int, bool]] = []

    def dying() -> int:
        started.set()
        release.wait(5)
        raise KeyboardInterrupt

    def runner() -> None:
        with contextlib.suppress(KeyboardInterrupt):
            sf.run("k", dying, 5)

    t = threading.Thread(target=runner)
    t.start()
    assert started.wait(5)
    w = threading.Thread(target=lambda: results.append(sf.run("k", lambda: 7, 5)))
    w.start()
    release.set()
    t.join(5)
    w.join(5)
    assert results == [(7, False)]


def test_settle_releases_waiters_before_the_runner_returns() -> None:
    """settle() hands the value to waiters at once while the runner is still cleaning up."""
    sf = SingleFlight()
    started = threading.Event()
    cleanup = threading.Event()
    results: list[tuple[str, bool]] = []

    def fn() -> str:
        started.set()
        sf.settle("k", "v")
        cleanup.wait(5)  # e.g. releasing a lease
        return "v"

    runner = threading.Thread(target=lambda: results.append(sf.run("k", fn, 5)))
    runner.start()
    assert started.wait(5)
    assert sf.run("k", lambda: "other", 5) == ("v", True)
    assert runner.is_alive()
    cleanup.set()
    runner.join(5)
    assert results == [("v", False)]


def test_async_single_flight_shares_settles_and_survives_cancelled_waiters() -> None:
    """Tasks coalesce on one call; a cancelled waiter leaves the others and the runner
    alone; settle() releases the waiters before the runner returns."""
    async def body() -> None:
        sf = AsyncSingleFlight()
        calls = 0
        go = asyncio.Event()
        cleanup = asyncio.Event()

        async def fn() -> str:
            nonlocal calls
            calls += 1
            await go.wait()
            sf.settle("k", "v")
            await cleanup.wait()
            return "v"

        runner = asyncio.create_task(sf.run("k", fn, 5))
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(sf.run("k", fn, 5)) for _ in range(5)]
        await asyncio.sleep(0)
        assert sf.waiting("k") == 5
        waiters[0].cancel()
        await asyncio.sleep(0)
        go.set()
        results = await asyncio.gather(*waiters[1:])
        assert results == [("v", True)] * 4
        assert not runner.done()
        cleanup.set()
        assert await runner == ("v", False)
        assert calls == 1
        assert waiters[0].cancelled()
        assert len(sf) == 0

    asyncio.run(body())
