"""Redis down, black-holed or back: the cache answers without it and recovers by itself."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from fleetcache import MISS, BackendError, Cache, Policy
from fleetcache.core.keys import request_hash
from fleetcache.testing import FaultProxy
from fleetcache.testing.waiting import wait_until

REQ = {"prompt": "fail open"}
FAST = Policy(redis_timeout=0.3, retry_backoff=0.05, retry_backoff_max=0.2, wait_timeout=5)
#: The bound a call may take with Redis unreachable: a few timeouts of 0.3 s plus margin.
BOUND = 2.0


def test_stopped_redis_fails_open_coalesced_and_recovers(fresh_node: Any) -> None:
    """Redis stopped: get_or_set answers via compute within the bound, threads coalesce
    into one call; once Redis is back the cache writes to it again by itself."""
    client = fresh_node.client()
    with Cache(client, namespace="fo", policy=FAST) as cache:
        assert cache.get_or_set({"warm": 1}, lambda: "w") == "w"
        fresh_node.stop()
        release = threading.Event()
        calls: list[int] = []

        def compute() -> str:
            calls.append(1)
            release.wait(5)
            return "computed"

        results: list[tuple[Any, float]] = []

        def call() -> None:
            start = time.monotonic()
            results.append((cache.get_or_set(REQ, compute), time.monotonic() - start))

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        flight = cache._flight_key(request_hash(REQ))
        wait_until(lambda: len(calls) == 1 and cache._flights.waiting(flight) == 3,
                   5, "one compute with three coalesced callers")
        release.set()
        for t in threads:
            t.join(10)
        assert [v for v, _ in results] == ["computed"] * 4
        assert calls == [1]
        assert cache.stats.fail_open >= 1
        start = time.monotonic()
        assert cache.get(REQ) is MISS
        assert time.monotonic() - start < BOUND

        fresh_node.restart()
        wait_until(lambda: cache.set({"probe": 1}, "p"), 10, "the cache to use Redis again")
        assert cache.get_or_set(REQ, lambda: "stored") == "stored"
        assert cache.get(REQ) == "stored"
        assert fresh_node.client().exists(*[k for k in fresh_node.client().scan_iter("fc:fo:*")])
    client.close()


def test_blackholed_redis_answers_within_bound(fresh_node: Any) -> None:
    """Redis black-holed (bytes swallowed): get_or_set still answers within the bound."""
    with FaultProxy(fresh_node.host, fresh_node.port) as proxy:
        client = redis.Redis.from_url(proxy.url, socket_timeout=2, socket_connect_timeout=2)
        with Cache(client, namespace="bh", policy=FAST) as cache:
            assert cache.get_or_set({"warm": 1}, lambda: "w") == "w"
            proxy.blackhole()
            start = time.monotonic()
            assert cache.get_or_set(REQ, lambda: "direct") == "direct"
            first = time.monotonic() - start
            start = time.monotonic()
            assert cache.get_or_set({"other": 1}, lambda: "direct2") == "direct2"
            second = time.monotonic() - start
            assert first < BOUND, f"first call took {first:.2f}s"
            assert second < BOUND, f"second call took {second:.2f}s"
            assert cache.stats.fail_open >= 2
            proxy.heal()
            wait_until(lambda: cache.set({"probe": 1}, "p"), 10, "recovery after heal")
        client.close()


def test_fail_closed_raises_backend_error(fresh_node: Any) -> None:
    """With fail_open=False a dead Redis raises BackendError instead of computing."""
    client = fresh_node.client()
    policy = Policy(redis_timeout=0.3, fail_open=False)
    with Cache(client, namespace="fc", policy=policy) as cache:
        cache.get({"warm": 1})
        fresh_node.stop()
        calls: list[int] = []
        with pytest.raises(BackendError):
            cache.get_or_set(REQ, lambda: calls.append(1))
        assert calls == []
    client.close()
