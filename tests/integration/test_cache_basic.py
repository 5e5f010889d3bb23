"""The sync Cache against a real Redis: get/set/delete, invalidation, bad input, corruption."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
import redis

from fleetcache import MISS, Cache, Policy
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.testing.waiting import wait_until

REQ = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "temperature": 0}


def entry_key(cache: Cache, request: Any) -> str:
    """The Redis key the cache uses for ``request`` right now."""
    assert cache.generation is not None
    return KeyLayout(cache.namespace).entry(request_hash(request), cache.generation).value


def test_get_set_delete_round_trip(r: redis.Redis) -> None:
    """set then get returns the value; delete makes it a MISS again."""
    with Cache(r, namespace="basic") as cache:
        assert cache.get(REQ) is MISS
        assert cache.set(REQ, {"text": "hi", "n": [1, 2]})
        assert cache.get(REQ) == {"text": "hi", "n": [1, 2]}
        assert cache.delete(REQ)
        assert cache.get(REQ) is MISS
        assert not cache.delete(REQ)


def test_hit_does_not_call_compute(r: redis.Redis) -> None:
    """A second get_or_set of the same request is served from Redis, compute not called."""
    calls: list[str] = []

    def compute(value: str) -> str:
        calls.append(value)
        return value

    with Cache(r, namespace="hit") as cache:
        assert cache.get_or_set(REQ, lambda: compute("v")) == "v"
        assert cache.get_or_set(REQ, lambda: compute("other")) == "v"
    assert calls == ["v"]


def test_entry_has_ttl_of_policy(r: redis.Redis) -> None:
    """The stored entry expires after Policy.ttl; no fleetcache key is left without TTL."""
    with Cache(r, namespace="ttl", policy=Policy(ttl=120)) as cache:
        cache.get_or_set(REQ, lambda: "v")
        ttl = r.pttl(entry_key(cache, REQ))
        assert 119_000 < ttl <= 120_000
        assert all(r.ttl(k) > 0 for k in r.scan_iter("fc:ttl:*"))


def test_key_order_of_request_hits_same_entry(r: redis.Redis) -> None:
    """A request with its keys in another order is the same entry."""
    with Cache(r, namespace="order") as cache:
        cache.set({"a": 1, "b": 2}, "v")
        assert cache.get({"b": 2, "a": 1}) == "v"


def test_invalidate_is_fleet_wide(r: redis.Redis, redis_node: Any) -> None:
    """invalidate() on one cache makes entries unreachable from another process's cache."""
    other_client = redis_node.client()
    with Cache(r, namespace="inv") as a, Cache(other_client, namespace="inv") as b:
        a.set(REQ, "old")
        assert b.get(REQ) == "old"
        wait_until(lambda: b.subscribed, 5, "b's subscription (a hit never waits for it)")
        new_gen = a.invalidate()
        wait_until(lambda: b.generation == new_gen, 5, "b to learn the new generation")
        assert b.get(REQ) is MISS
        assert a.get(REQ) is MISS
        assert b.get_or_set(REQ, lambda: "new") == "new"
        assert a.get(REQ) == "new"
    other_client.close()


def test_generation_survives_expiry_of_its_key(r: redis.Redis) -> None:
    """If the generation key vanishes, the next generation is larger: old entries stay dead."""
    with Cache(r, namespace="gen") as cache:
        cache.set(REQ, "old")
        old_gen = cache.generation
        assert old_gen is not None
        r.delete("fc:gen:gen")
    with Cache(r, namespace="gen") as fresh:
        assert fresh.get(REQ) is MISS
        assert fresh.generation is not None
        assert fresh.generation > old_gen


def test_corrupt_entry_is_a_miss_and_gets_repaired(r: redis.Redis) -> None:
    """Random bytes under the key read as a MISS; get_or_set recomputes and overwrites them."""
    with Cache(r, namespace="corrupt") as cache:
        cache.set(REQ, "seed")
        key = entry_key(cache, REQ)
        r.set(key, os.urandom(64))
        assert cache.get(REQ) is MISS
        assert cache.stats.codec_errors == 1
        assert cache.get_or_set(REQ, lambda: {"fixed": True}) == {"fixed": True}
        assert cache.get(REQ) == {"fixed": True}
        assert cache.stats.upstream_calls == 1


def test_non_json_request_raises_before_anything(r: redis.Redis) -> None:
    """A request that is not JSON data raises TypeError; compute is not called, nothing written."""
    calls: list[int] = []
    with Cache(r, namespace="badreq") as cache:
        with pytest.raises(TypeError):
            cache.get_or_set({"a": {1, 2}}, lambda: calls.append(1))
        with pytest.raises(TypeError):
            cache.set(object(), "v")
    assert calls == []
    assert list(r.scan_iter("fc:badreq:*")) == []


def test_non_json_result_raises_and_writes_nothing(r: redis.Redis) -> None:
    """A compute result that is not JSON data raises TypeError and nothing is stored."""
    with Cache(r, namespace="badval") as cache:
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            cache.get_or_set(REQ, lambda: {"x": object()})
        with pytest.raises(TypeError):
            cache.set(REQ, b"bytes")
        assert cache.get(REQ) is MISS
        keys = {k.decode() for k in r.scan_iter("fc:badval:*")}
        assert entry_key(cache, REQ) not in keys
        keys_of_req = KeyLayout("badval").entry(request_hash(REQ), cache.generation or 0)
        assert not r.exists(keys_of_req.lock)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"namespace": "bad ns"}, ValueError),
        ({"policy": {"ttl": 1}}, TypeError),
        ({"lock": object()}, TypeError),
    ],
)
def test_bad_constructor_arguments(r: redis.Redis, kwargs: dict[str, Any],
                                   exc: type[Exception]) -> None:
    """Bad constructor arguments raise at once."""
    with pytest.raises(exc):
        Cache(r, **kwargs)


def test_non_redis_client_refused() -> None:
    """Something that is not a redis.Redis raises TypeError."""
    with pytest.raises(TypeError, match=r"redis\.Redis"):
        Cache("redis://127.0.0.1:6379")  # type: ignore[arg-type]


def test_compute_must_be_callable(r: redis.Redis) -> None:
    """A non-callable compute raises TypeError before Redis is touched."""
    with Cache(r, namespace="call") as cache, pytest.raises(TypeError):
        cache.get_or_set(REQ, "not callable")  # type: ignore[arg-type]


def test_decode_responses_client_still_works(redis_node: Any) -> None:
    """A client with decode_responses=True is fine: the cache's own pool reads bytes."""
    client = redis_node.client(decode_responses=True)
    with Cache(client, namespace="dec") as cache:
        assert cache.get_or_set(REQ, lambda: "é") == "é"
        assert cache.get(REQ) == "é"
    with pytest.raises(ValueError, match="decode_responses"):
        Cache(client, namespace="dec", policy=Policy(redis_timeout=None))
    client.close()


def test_busy_pool_is_load_not_an_outage(redis_node: Any) -> None:
    """More threads than pooled connections: callers wait for a connection instead of the
    cache mistaking an exhausted pool for a dead Redis (no fail-open, every get a hit)."""
    client = redis_node.client(max_connections=2)
    with Cache(client, namespace="pool") as cache:
        cache.set(REQ, "v")
        barrier = threading.Barrier(16)
        seen: list[Any] = []

        def worker() -> None:
            barrier.wait()
            seen.extend(cache.get(REQ) for _ in range(50))

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert seen == ["v"] * 800
        assert cache.stats.fail_open == 0
        assert cache.stats.backend_errors == 0
    client.close()


def test_replica_acks_shortfall_is_counted_and_the_value_kept(r: redis.Redis) -> None:
    """Policy(replica_acks=1) on a node without replicas: the write stays, the caller gets
    its value, and the missing acknowledgement is counted once per write."""
    policy = Policy(ttl=60, replica_acks=1, replica_ack_timeout=0.02)
    with Cache(r, namespace="acks", policy=policy) as cache:
        assert cache.get_or_set({"a": 1}, lambda: "v") == "v"
        assert cache.set({"a": 2}, "w") is True
        assert cache.get({"a": 1}) == "v"
        assert cache.get({"a": 2}) == "w"
        assert cache.stats.replica_ack_shortfalls == 2
