"""Leader/follower single-flight between caches (each Cache stands for one process)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from fleetcache import Cache, LeaderFailed, Policy, WaitTimeout
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.locking import FencedLock, SetNxLock
from fleetcache.testing.waiting import wait_until

REQ = {"prompt": "single flight"}


def record(log: list[str], who: str) -> str:
    """Note an upstream call by ``who`` in ``log`` and return a value naming it."""
    log.append(who)
    return who.upper()


def lock_key(cache: Cache, request: Any) -> str:
    """The lock key of ``request``'s entry in the cache's current generation."""
    assert cache.generation is not None
    return KeyLayout(cache.namespace).entry(request_hash(request), cache.generation).lock


def test_follower_is_woken_by_notification_not_poll(r: redis.Redis, redis_node: Any) -> None:
    """A follower returns as soon as the leader writes, long before its fallback poll."""
    policy = Policy(poll_interval=30.0, wait_timeout=60.0)
    release = threading.Event()
    results: dict[str, Any] = {}
    client_b = redis_node.client()
    with Cache(r, namespace="sf", policy=policy) as a, \
            Cache(client_b, namespace="sf", policy=policy) as b:

        def lead() -> None:
            results["a"] = a.get_or_set(REQ, lambda: release.wait(10) and "value")

        ta = threading.Thread(target=lead)
        ta.start()
        wait_until(lambda: a.generation is not None and r.exists(lock_key(a, REQ)), 5,
                   "the leader to take the lease")
        tb = threading.Thread(
            target=lambda: results.setdefault("b", b.get_or_set(REQ, lambda: "B")))
        tb.start()
        wait_until(lambda: b._notifier.waiting() == 1, 5, "b to wait as a follower")
        released_at = time.monotonic()
        release.set()
        tb.join(10)
        woke_after = time.monotonic() - released_at
        ta.join(10)
        assert results == {"a": "value", "b": "value"}
        assert b.stats.followed == 1
        assert b.stats.upstream_calls == 0
        assert woke_after < 5.0, f"follower took {woke_after:.2f}s: woken by the poll?"
        assert b._notifier.waiting() == 0
    client_b.close()


def test_leader_exception_reaches_followers_as_leader_failed(
    r: redis.Redis, redis_node: Any
) -> None:
    """Leader's compute raises: its caller and its threads get the exception itself,
    a follower elsewhere gets LeaderFailed naming it, and nobody else calls upstream."""
    release = threading.Event()
    outcome: dict[str, BaseException | Any] = {}
    client_b = redis_node.client()
    upstream: list[str] = []

    def failing() -> Any:
        upstream.append("a")
        release.wait(10)
        raise ValueError("rate limited")

    with Cache(r, namespace="fail") as a, Cache(client_b, namespace="fail") as b:

        def run(name: str, cache: Cache, fn: Any) -> None:
            try:
                outcome[name] = cache.get_or_set(REQ, fn)
            except Exception as exc:
                outcome[name] = exc

        threads = [threading.Thread(target=run, args=("a", a, failing))]
        threads[0].start()
        wait_until(lambda: a.generation is not None and r.exists(lock_key(a, REQ)), 5,
                   "the leader to take the lease")
        threads.append(threading.Thread(target=run, args=("a2", a, failing)))
        threads.append(threading.Thread(
            target=run, args=("b", b, lambda: record(upstream, "b"))))
        for t in threads[1:]:
            t.start()
        flight = a._flight_key(request_hash(REQ))
        wait_until(lambda: b._notifier.waiting() == 1 and a._flights.waiting(flight) == 1, 5,
                   "b to follow and a2 to coalesce")
        release.set()
        for t in threads:
            t.join(10)
        assert isinstance(outcome["a"], ValueError)
        assert outcome["a2"] is outcome["a"]
        assert isinstance(outcome["b"], LeaderFailed)
        assert outcome["b"].exc_type == "builtins.ValueError"
        assert outcome["b"].message == ""  # messages stay private unless the policy shares them
        assert upstream == ["a"]
        # the next caller starts a fresh leadership and succeeds
        assert b.get_or_set(REQ, lambda: "recovered") == "recovered"
        assert not r.exists(KeyLayout("fail").entry(request_hash(REQ), b.generation or 0).error)
    client_b.close()


def test_follower_gives_up_after_wait_timeout(r: redis.Redis) -> None:
    """With the lease held elsewhere and no result coming, a follower raises WaitTimeout."""
    with Cache(r, namespace="wt", policy=Policy(wait_timeout=0.3, lock_ttl=30)) as cache:
        cache.get({"warm": 1})
        lease = SetNxLock(r).try_acquire(lock_key(cache, REQ), 30)
        assert lease is not None
        start = time.monotonic()
        with pytest.raises(WaitTimeout):
            cache.get_or_set(REQ, lambda: "never")
        assert 0.3 <= time.monotonic() - start < 2.0
        assert cache.stats.wait_timeouts == 1


def test_follower_takes_over_an_abandoned_lease(r: redis.Redis) -> None:
    """A lease whose holder vanished expires and the follower becomes leader."""
    with Cache(r, namespace="takeover", policy=Policy(lock_ttl=0.4, wait_timeout=5)) as cache:
        cache.get({"warm": 1})
        assert SetNxLock(r).try_acquire(lock_key(cache, REQ), 0.4) is not None
        assert cache.get_or_set(REQ, lambda: "mine") == "mine"
        assert cache.stats.takeovers == 1
        assert cache.stats.upstream_calls == 1


def test_long_compute_keeps_its_lease(r: redis.Redis, redis_node: Any) -> None:
    """A compute outliving lock_ttl keeps the lease (watchdog): no second leader upstream."""
    policy = Policy(lock_ttl=0.3, wait_timeout=10)
    client_b = redis_node.client()
    upstream: list[str] = []
    results: dict[str, Any] = {}
    with Cache(r, namespace="long", policy=policy) as a, \
            Cache(client_b, namespace="long", policy=policy) as b:
        def slow() -> str:
            upstream.append("a")
            time.sleep(1.2)  # the upstream call itself: four lock TTLs long
            return "slow"

        ta = threading.Thread(target=lambda: results.setdefault("a", a.get_or_set(REQ, slow)))
        ta.start()
        wait_until(lambda: a.generation is not None and r.exists(lock_key(a, REQ)), 5,
                   "the leader to take the lease")
        results["b"] = b.get_or_set(REQ, lambda: record(upstream, "b"))
        ta.join(10)
    assert upstream == ["a"]
    assert results == {"a": "slow", "b": "slow"}
    client_b.close()


def test_max_hold_bounds_a_hung_compute(r: redis.Redis, redis_node: Any) -> None:
    """A compute hung past Policy.max_hold stops being renewed: its lease expires, a
    follower takes over and writes; the hung call's late write is refused by its fence."""
    policy = Policy(lock_ttl=0.3, max_hold=0.9, wait_timeout=10)
    release = threading.Event()
    results: dict[str, Any] = {}
    client_b = redis_node.client()
    with Cache(r, namespace="maxhold", lock=FencedLock(r), policy=policy) as a, \
            Cache(client_b, namespace="maxhold", lock=FencedLock(client_b), policy=policy) as b:
        ta = threading.Thread(target=lambda: results.setdefault(
            "a", a.get_or_set(REQ, lambda: release.wait(20) and "hung")))
        ta.start()
        wait_until(lambda: a.generation is not None and r.exists(lock_key(a, REQ)), 5,
                   "the hung leader to take the lease")
        started = time.monotonic()
        results["b"] = b.get_or_set(REQ, lambda: "fresh")
        took_over_after = time.monotonic() - started
        assert b.stats.takeovers == 1
        assert took_over_after >= 0.9 - 0.3, "taken over before max_hold: not renewed?"
        release.set()
        ta.join(10)
        assert results == {"a": "hung", "b": "fresh"}
        assert a.stats.writes_refused == 1
        assert a.get(REQ) == "fresh"
    client_b.close()
