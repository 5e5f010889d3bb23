"""Creating, sharing and closing caches the way FastAPI/uvicorn, gunicorn, scripts and
Celery tasks do (hardening item 13)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from typing import Any

import pytest
import redis
import redis.asyncio

from fleetcache import AsyncCache, Cache, Policy
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.testing import FaultProxy

REQ = {"prompt": "lifecycle"}


async def until(predicate: Any, timeout: float = 10.0) -> None:
    """Await ``predicate()`` turning true, checking every 5 ms."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def test_close_lets_a_cancelled_leader_release_and_wake(
    r: redis.Redis, redis_node: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """(hardening item 13) As uvicorn does at shutdown: the leader's request task is
    cancelled and close() runs at once, while the leader's release is on a slow link
    (50 ms each way).  close() returns only once the leader released its lease and woke
    the follower in another process, which takes over at once (not at its 20 s poll);
    no release fails."""
    caplog.set_level(logging.WARNING, logger="fleetcache")

    async def trial(n: int, proxy: FaultProxy) -> None:
        started = asyncio.Event()
        policy = Policy(lock_ttl=30, poll_interval=20, wait_timeout=30)

        async def slow() -> str:
            started.set()
            await asyncio.sleep(60)
            return "never"

        req = {**REQ, "trial": n}
        client_a = redis.asyncio.Redis.from_url(proxy.url, socket_timeout=2)
        a = AsyncCache(client_a, namespace="shutdown", policy=policy)
        async with AsyncCache(redis_node.async_client(), namespace="shutdown",
                              policy=policy) as b:
            leader = asyncio.create_task(a.get_or_set(req, slow))
            await started.wait()
            follower = asyncio.create_task(b.get_or_set(req, lambda: "taken over"))
            await until(lambda: b._notifier.waiting() == 1)
            lock = KeyLayout("shutdown").entry(request_hash(req), a.generation or 0).lock
            assert r.exists(lock)
            proxy.delay(0.05)
            leader.cancel()
            await a.close()  # the lifespan shutdown, right after the cancellation
            assert not r.exists(lock), "close() returned before the leader released"
            proxy.heal()
            async with asyncio.timeout(5):
                assert await follower == "taken over"
            assert leader.cancelled()
            assert b.stats.takeovers == 1
        await client_a.aclose()

    async def body() -> None:
        with FaultProxy(redis_node.host, redis_node.port) as proxy:
            for n in range(3):
                await trial(n, proxy)

    asyncio.run(body())
    assert "releasing" not in caplog.text, caplog.text


def test_an_async_cache_survives_two_event_loops(r: redis.Redis, redis_node: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """(hardening item 13) One AsyncCache used by two asyncio.run() calls (a script, a
    Celery task) answers in both, rebinding to the second loop, and nothing is logged as
    a never-retrieved task exception or a foreign-loop error."""
    caplog.set_level(logging.DEBUG, logger="asyncio")
    cache = AsyncCache(redis_node.async_client(), namespace="twoloops")

    async def first() -> Any:
        return await cache.get_or_set(REQ, lambda: "v1")

    async def second() -> tuple[Any, Any, bool]:
        hit = await cache.get_or_set(REQ, lambda: "not called")
        miss = await cache.get_or_set({"prompt": "other"}, lambda: "v2")
        await until(lambda: cache.subscribed)
        subscribed = cache.subscribed
        await cache.close()
        return hit, miss, subscribed

    assert asyncio.run(first()) == "v1"
    gc.collect()
    assert asyncio.run(second()) == ("v1", "v2", True)
    gc.collect()
    text = caplog.text
    assert "destroyed but it is pending" not in text, text
    assert "never retrieved" not in text, text
    assert "different loop" not in text, text
    assert "attached to a different" not in text, text


def test_an_async_cache_in_use_on_a_running_loop_refuses_another(redis_node: Any) -> None:
    """(hardening item 13) Using one AsyncCache from a second loop while the first still
    runs (in another thread) raises a clear RuntimeError instead of corrupting both."""
    cache = AsyncCache(redis_node.async_client(), namespace="busyloop")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        fut = asyncio.run_coroutine_threadsafe(cache.get_or_set(REQ, lambda: "a"), loop)
        assert fut.result(10) == "a"

        async def elsewhere() -> Any:
            return await cache.get(REQ)

        with pytest.raises(RuntimeError, match="one AsyncCache per event loop"):
            asyncio.run(elsewhere())
        asyncio.run_coroutine_threadsafe(cache.close(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def cache_connections(r: redis.Redis, name: str) -> int:
    """How many connections the server sees with the given client name."""
    return sum(1 for c in r.client_list() if c.get("name") == name)


def test_the_async_pool_is_capped(r: redis.Redis, redis_node: Any) -> None:
    """(hardening item 13) A burst of 200 concurrent requests opens at most
    Policy.max_connections connections (plus the subscription), all answered."""

    async def body() -> int:
        client = redis_node.async_client(client_name="capped")
        async with AsyncCache(client, namespace="cap", policy=Policy(max_connections=8)) as c:
            await c.set(REQ, "v")
            got = await asyncio.gather(*(c.get_or_set({"i": i % 20}, lambda: "x")
                                         for i in range(200)))
            assert len(got) == 200
            hits = await asyncio.gather(*(c.get(REQ) for _ in range(200)))
            assert set(hits) == {"v"}
            opened = cache_connections(r, "capped")
        await client.aclose()
        return opened

    assert asyncio.run(body()) <= 8 + 1


def test_the_sync_pool_is_capped(r: redis.Redis, redis_node: Any) -> None:
    """(hardening item 13) 32 threads hammering one Cache open at most
    Policy.max_connections connections (plus the subscription)."""
    client = redis_node.client(client_name="capped-sync")
    with Cache(client, namespace="capsync", policy=Policy(max_connections=4)) as cache:
        cache.set(REQ, "v")
        barrier = threading.Barrier(32)
        errors: list[BaseException] = []

        def hammer() -> None:
            barrier.wait()
            for _ in range(50):
                try:
                    assert cache.get(REQ) == "v"
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert cache.stats.fail_open == 0
        assert cache_connections(r, "capped-sync") <= 4 + 1
    client.close()
