"""The cache's time bound holds for lock calls too, whatever client the lock was built on
(hardening item 6)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from fleetcache import Cache, Policy
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.locking import FencedLock, SetNxLock
from fleetcache.testing import FaultProxy
from fleetcache.testing.waiting import wait_until

REQ = {"prompt": "lock bound"}
POLICY = Policy(redis_timeout=0.3, retry_backoff=0.05, retry_backoff_max=0.2, wait_timeout=5)
#: A call with Redis hung: a few redis_timeouts (lock, write, release) plus margin.
BOUND = 3.0


def timed_call(cache: Cache, compute: Any) -> tuple[Any, float]:
    """Run get_or_set in a thread; give up waiting after 20 s (a hang fails the test)."""
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        out["value"] = cache.get_or_set(REQ, compute)
        out["took"] = time.monotonic() - start

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "get_or_set hung"
    return out["value"], out["took"]


@pytest.mark.parametrize("lock_cls", [FencedLock, SetNxLock])
def test_redis_paused_during_compute_bounded_with_the_readmes_lock(
    fresh_node: Any, lock_cls: Any
) -> None:
    """(hardening item 6) ``Cache(r, lock=FencedLock(r))`` on a client without timeouts:
    Redis SIGSTOPped while compute runs; get_or_set still returns within the bound."""
    client = redis.Redis(host=fresh_node.host, port=fresh_node.port)  # no socket_timeout
    with Cache(client, namespace="lb", lock=lock_cls(client), policy=POLICY) as cache:
        assert cache.get({"warm": 1}) is not None
        started = threading.Event()

        def compute() -> str:
            started.set()
            wait_until(lambda: fresh_node.paused, 10, "Redis to be paused")
            return "computed"

        pauser = threading.Thread(target=lambda: started.wait(10) and fresh_node.pause())
        pauser.start()
        try:
            value, took = timed_call(cache, compute)
        finally:
            pauser.join(10)
            fresh_node.resume()
        assert value == "computed"
        assert took < BOUND, f"took {took:.2f}s with Redis paused"
    client.close()


def test_blackholed_redis_bounded_with_a_lock_on_another_client(fresh_node: Any) -> None:
    """(hardening item 6) The lock built on a separate client without timeouts, Redis
    black-holed during compute: the call returns within the bound (it never did)."""
    with FaultProxy(fresh_node.host, fresh_node.port) as proxy:
        client = redis.Redis.from_url(proxy.url, socket_timeout=2)
        lock_client = redis.Redis.from_url(proxy.url)  # no socket_timeout at all
        with Cache(client, namespace="lbh", lock=FencedLock(lock_client), policy=POLICY) as cache:
            assert cache.get({"warm": 1}) is not None
            assert getattr(cache.lock, "client", None) is not lock_client  # a bounded copy

            def compute() -> str:
                proxy.blackhole()
                return "computed"

            value, took = timed_call(cache, compute)
            assert value == "computed"
            assert took < BOUND, f"took {took:.2f}s with Redis black-holed"
            proxy.heal()
        client.close()
        lock_client.close()


def test_a_lock_client_that_cannot_be_bounded_is_refused(r: redis.Redis,
                                                         redis_node: Any) -> None:
    """(hardening item 6) A lock on a client whose pool cannot be copied (a blocking pool)
    and that has no socket timeout is refused at construction, with what to do."""
    pool = redis.BlockingConnectionPool(host=redis_node.host, port=redis_node.port)
    lock_client = redis.Redis(connection_pool=pool)
    with pytest.raises(ValueError, match="socket_timeout"):
        Cache(r, namespace="lbr", lock=FencedLock(lock_client))
    bounded = redis.Redis(connection_pool=redis.BlockingConnectionPool(
        host=redis_node.host, port=redis_node.port, socket_timeout=0.5))
    with Cache(r, namespace="lbr", lock=FencedLock(bounded)) as cache:
        assert cache.get_or_set(REQ, lambda: "ok") == "ok"
    lock_client.close()
    bounded.close()


def test_default_lock_is_fenced_on_the_cache_pool(r: redis.Redis) -> None:
    """(hardening items 14 and 12) Without a lock argument the cache uses FencedLock on its
    own bounded pool; the entry's fence key holds the leader's fence after a miss, and the
    lock's fence counter lives as long as the entry, not 7 days."""
    with Cache(r, namespace="deflock") as cache:
        assert isinstance(cache.lock, FencedLock)
        assert cache.lock.client is cache._binding.store.redis
        assert cache.get_or_set(REQ, lambda: "v") == "v"
        keys = KeyLayout("deflock").entry(request_hash(REQ), cache.generation or 0)
        fence = r.get(keys.fence)
        assert fence is not None
        assert int(fence) > 0
        counter_ttl = r.pttl(keys.lock + ":fence")
        assert 0 < counter_ttl <= cache.policy.ttl * 1000
