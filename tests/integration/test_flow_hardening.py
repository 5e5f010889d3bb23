"""Flow details a fleet meets in its first week (hardening items 7, 8 and 12)."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
import redis

from fleetcache import MISS, Cache, LeaderFailed, Policy
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.testing import FaultProxy
from fleetcache.testing.waiting import wait_until

REQ = {"prompt": "flow"}


def lock_key(cache: Cache, request: Any) -> str:
    """The lock key of ``request``'s entry in the cache's current generation."""
    assert cache.generation is not None
    return KeyLayout(cache.namespace).entry(request_hash(request), cache.generation).lock


def test_invalidate_reaches_in_process_coalescing(r: redis.Redis) -> None:
    """(hardening item 7) A get_or_set made right after invalidate() in the same process
    does not join the old generation's flight: it computes the new value at once."""
    release = threading.Event()
    results: dict[str, Any] = {}
    with Cache(r, namespace="invflight") as cache:
        t = threading.Thread(target=lambda: results.setdefault(
            "old", cache.get_or_set(REQ, lambda: release.wait(10) and "from the old prompt")))
        t.start()
        wait_until(lambda: cache.generation is not None and r.exists(lock_key(cache, REQ)), 5,
                   "the old flight to lead")
        cache.invalidate()
        start = time.monotonic()
        assert cache.get_or_set(REQ, lambda: "from the new prompt") == "from the new prompt"
        assert time.monotonic() - start < 2.0
        release.set()
        t.join(10)
        assert results["old"] == "from the old prompt"
        assert cache.get(REQ) == "from the new prompt"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {1: "int key"},
                                 {"nested": [1.0, {"x": math.nan}]}],
                         ids=["nan", "inf", "-inf", "int-key", "nested-nan"])
def test_a_value_that_is_not_json_data_is_refused_not_stored(r: redis.Redis, bad: Any) -> None:
    """(hardening item 8) NaN, infinities and non-string keys in a value raise TypeError to
    the caller (never stored silently as null): no entry is written; followers elsewhere
    are told the leader failed with a TypeError."""
    with Cache(r, namespace="badval") as cache:
        with pytest.raises(TypeError, match="value"):
            cache.get_or_set(REQ, lambda: bad)
        assert cache.get(REQ) is MISS
        keys = KeyLayout("badval").entry(request_hash(REQ), cache.generation or 0)
        assert not r.exists(keys.value)
        assert r.get(keys.error) == b'{"t":"builtins.TypeError"}'
        with pytest.raises(TypeError, match="value"):
            cache.set(REQ, bad)
        assert not r.exists(keys.value)


def test_big_integers_in_values_round_trip(r: redis.Redis) -> None:
    """(hardening item 8) Integers beyond 64 bits are JSON data, in values as in requests:
    stored, and read back exactly."""
    value = {"n": 2**100 + 1, "neg": -(2**80), "small": 3}
    with Cache(r, namespace="bigint") as cache:
        assert cache.get_or_set({"n": 2**70}, lambda: value) == value
        assert cache.get({"n": 2**70}) == value


def test_a_superseded_leader_cannot_fail_the_new_leaders_followers(
    r: redis.Redis, redis_node: Any
) -> None:
    """(hardening item 12) A leader whose lease expired (max_hold) fails after a newer
    leader claimed the entry: its failure record is refused, so the newer leader's
    follower gets the newer value, not LeaderFailed."""
    policy = Policy(lock_ttl=0.3, max_hold=0.3, wait_timeout=10, poll_interval=0.1)
    clients = [redis_node.client() for _ in range(2)]
    old_go, new_go = threading.Event(), threading.Event()
    out: dict[str, Any] = {}

    def run(name: str, cache: Cache, fn: Any) -> None:
        try:
            out[name] = cache.get_or_set(REQ, fn)
        except Exception as exc:
            out[name] = exc

    def old_compute() -> str:
        old_go.wait(10)
        raise RuntimeError("too late")

    with Cache(r, namespace="late", policy=policy) as a, \
            Cache(clients[0], namespace="late", policy=policy) as b, \
            Cache(clients[1], namespace="late", policy=policy) as c:
        ta = threading.Thread(target=run, args=("a", a, old_compute))
        ta.start()
        wait_until(lambda: a.generation is not None and r.exists(lock_key(a, REQ)), 5,
                   "the old leader's lease")
        tb = threading.Thread(target=run, args=("b", b, lambda: new_go.wait(10) and "new"))
        tb.start()
        wait_until(lambda: b.stats.upstream_calls == 1, 10,
                   "b to take over the expired lease and claim the entry")
        tc = threading.Thread(target=run, args=("c", c, lambda: "c"))
        tc.start()
        wait_until(lambda: c._notifier.waiting() == 1, 5, "c to follow b")
        old_go.set()
        ta.join(10)
        assert isinstance(out["a"], RuntimeError)
        keys = KeyLayout("late").entry(request_hash(REQ), a.generation or 0)
        assert not r.exists(keys.error)
        new_go.set()
        tb.join(10)
        tc.join(10)
        assert out["b"] == "new"
        assert out["c"] == "new", f"c got {out['c']!r}"
        assert not isinstance(out["c"], LeaderFailed)
    for client in clients:
        client.close()


def test_only_one_caller_probes_when_the_backoff_ends(fresh_node: Any) -> None:
    """(hardening item 12) With Redis down, when the breaker's back-off ends, eight
    concurrent callers send one probe between them, not eight."""
    client = fresh_node.client()
    policy = Policy(redis_timeout=0.3, retry_backoff=0.2, retry_backoff_max=0.2)
    with Cache(client, namespace="probe", policy=policy) as cache:
        assert cache.get({"warm": 1}) is MISS
        fresh_node.stop()
        assert cache.get(REQ) is MISS
        assert cache.stats.backend_errors == 1
        wait_until(lambda: not cache._breaker.is_open, 5, "the back-off to end")
        barrier = threading.Barrier(8)

        def call() -> None:
            barrier.wait()
            assert cache.get(REQ) is MISS

        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert cache.stats.backend_errors == 2
        assert cache.stats.fail_open == 9
    client.close()


def test_set_and_delete_respect_the_open_breaker(fresh_node: Any) -> None:
    """(hardening item 12) While the breaker is open, set() and delete() skip Redis like
    get() does: they fail open at once (False) instead of each waiting a timeout."""
    with FaultProxy(fresh_node.host, fresh_node.port) as proxy:
        client = redis.Redis.from_url(proxy.url, socket_timeout=2)
        policy = Policy(redis_timeout=0.3, retry_backoff=30, retry_backoff_max=30)
        with Cache(client, namespace="brk", policy=policy) as cache:
            assert cache.set({"warm": 1}, "w")
            proxy.blackhole()
            assert cache.get(REQ) is MISS
            assert cache.stats.backend_errors == 1
            start = time.monotonic()
            assert cache.set(REQ, "v") is False
            assert cache.delete(REQ) is False
            assert time.monotonic() - start < 0.3
            assert cache.stats.backend_errors == 1
            assert cache.stats.fail_open == 3
            proxy.heal()
        client.close()
