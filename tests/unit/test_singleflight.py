"""In-process single-flight among threads."""

from __future__ import annotations

import contextlib
import threading

import pytest

from fleetcache.core.singleflight import SingleFlight
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
