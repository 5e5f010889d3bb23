"""Stats listeners: observe() hands durations to every listener, never raises, and
listeners survive a fork while the counters restart."""

from __future__ import annotations

import logging
import threading
from dataclasses import fields

import pytest

from fleetcache import Stats
from fleetcache.core.stats import FOLLOWER_WAIT_SECONDS, UPSTREAM_SECONDS
from fleetcache.metrics._common import Sources, counter_names


def test_observe_without_listeners_does_nothing() -> None:
    """observe() with no listener returns at once and changes no counter."""
    stats = Stats()
    stats.observe(UPSTREAM_SECONDS, 1.5)
    assert all(v == 0 for v in stats.snapshot().values())


def test_every_listener_gets_every_duration_in_order() -> None:
    """Each listener is called with (name, seconds), in registration order."""
    stats = Stats()
    calls: list[tuple[str, str, float]] = []
    stats.add_listener(lambda name, s: calls.append(("first", name, s)))
    stats.add_listener(lambda name, s: calls.append(("second", name, s)))
    stats.observe(UPSTREAM_SECONDS, 0.25)
    stats.observe(FOLLOWER_WAIT_SECONDS, 0.5)
    assert calls == [
        ("first", "upstream_seconds", 0.25), ("second", "upstream_seconds", 0.25),
        ("first", "follower_wait_seconds", 0.5), ("second", "follower_wait_seconds", 0.5),
    ]


def test_remove_listener_stops_calls_and_refuses_strangers() -> None:
    """A removed listener is no longer called; removing one never added raises ValueError."""
    stats = Stats()
    seen: list[float] = []

    def listener(name: str, seconds: float) -> None:
        seen.append(seconds)

    stats.add_listener(listener)
    stats.observe(UPSTREAM_SECONDS, 1.0)
    stats.remove_listener(listener)
    stats.observe(UPSTREAM_SECONDS, 2.0)
    assert seen == [1.0]
    with pytest.raises(ValueError, match="not a listener"):
        stats.remove_listener(listener)


def test_a_bound_method_can_be_removed() -> None:
    """A bound method (a new object at each attribute access) is removed by equality."""

    class Sink:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def on(self, name: str, seconds: float) -> None:
            self.seen.append(name)

    stats, sink = Stats(), Sink()
    stats.add_listener(sink.on)
    stats.observe(UPSTREAM_SECONDS, 1.0)
    stats.remove_listener(sink.on)
    stats.observe(UPSTREAM_SECONDS, 1.0)
    assert sink.seen == ["upstream_seconds"]


def test_a_listener_added_twice_is_called_twice_and_removed_once() -> None:
    """Listeners are a list, not a set: two additions, two calls; one removal each."""
    stats = Stats()
    seen: list[float] = []

    def listener(name: str, seconds: float) -> None:
        seen.append(seconds)

    stats.add_listener(listener)
    stats.add_listener(listener)
    stats.observe(UPSTREAM_SECONDS, 1.0)
    stats.remove_listener(listener)
    stats.observe(UPSTREAM_SECONDS, 2.0)
    assert seen == [1.0, 1.0, 2.0]


def test_a_raising_listener_is_skipped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """observe() never raises; the other listeners still run; the failure is logged once,
    at debug level."""
    stats = Stats()
    seen: list[float] = []

    def broken(name: str, seconds: float) -> None:
        raise RuntimeError("listener bug")

    stats.add_listener(broken)
    stats.add_listener(lambda name, s: seen.append(s))
    caplog.set_level(logging.DEBUG, logger="fleetcache")
    for i in range(3):
        stats.observe(UPSTREAM_SECONDS, float(i))
    assert seen == [0.0, 1.0, 2.0]
    logged = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelno == logging.DEBUG
    assert logged[0].exc_info is not None


def test_a_non_callable_listener_is_refused() -> None:
    """add_listener() raises TypeError for something that cannot be called."""
    with pytest.raises(TypeError, match="callable"):
        Stats().add_listener("not a function")  # type: ignore[arg-type]


def test_snapshot_holds_counters_only() -> None:
    """The listener bookkeeping is not a counter: snapshot() and equality ignore it."""
    stats = Stats()
    stats.add_listener(lambda name, s: None)
    assert set(stats.snapshot()) == {f.name for f in fields(Stats)
                                     if not f.name.startswith("_")}
    assert set(stats.snapshot()) == set(counter_names())
    assert stats == Stats()


def test_after_fork_zeroes_counters_and_keeps_listeners() -> None:
    """In a forked child the counters restart at zero and the listeners are still called."""
    stats = Stats()
    seen: list[str] = []
    stats.add_listener(lambda name, s: seen.append(name))
    stats.incr("hits", 5)
    stats._after_fork()
    assert stats.hits == 0
    stats.observe(FOLLOWER_WAIT_SECONDS, 0.1)
    assert seen == ["follower_wait_seconds"]
    stats.incr("hits")  # the new lock works
    assert stats.snapshot()["hits"] == 1


def test_listeners_change_safely_while_others_observe() -> None:
    """Adding and removing listeners from one thread while others observe loses no call
    to a listener registered throughout, and raises nothing."""
    stats = Stats()
    steady: list[float] = []
    lock = threading.Lock()

    def keep(name: str, seconds: float) -> None:
        with lock:
            steady.append(seconds)

    stats.add_listener(keep)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            fn = lambda name, s: None  # noqa: E731 - a new listener each time
            stats.add_listener(fn)
            stats.remove_listener(fn)

    def observe() -> None:
        for _ in range(2000):
            stats.observe(UPSTREAM_SECONDS, 1.0)

    churner = threading.Thread(target=churn)
    churner.start()
    observers = [threading.Thread(target=observe) for _ in range(4)]
    for t in observers:
        t.start()
    for t in observers:
        t.join()
    stop.set()
    churner.join()
    assert len(steady) == 8000


def test_sources_add_up_caches_of_one_namespace() -> None:
    """The exporters' sources sum the counters of caches sharing a namespace, and say when
    a namespace's last cache leaves."""
    one, two, other = Stats(), Stats(), Stats()
    one.incr("hits", 2)
    two.incr("hits", 3)
    other.incr("misses")
    sources = Sources()
    for ns, stats in (("a", one), ("a", two), ("b", other)):
        sources.add(ns, stats)
    totals = sources.totals()
    assert (totals["a"]["hits"], totals["b"]["hits"], totals["b"]["misses"]) == (5, 0, 1)
    assert one.hits == 2  # the sum is a copy
    assert not sources.remove(one)
    assert sources.remove(two)
    assert set(sources.totals()) == {"b"}
