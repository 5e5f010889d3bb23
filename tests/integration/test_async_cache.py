"""AsyncCache against a real Redis: same API and guarantees as the sync cache."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from redis import asyncio as aioredis

from fleetcache import MISS, AsyncCache, LeaderFailed, Policy
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.locking import AsyncFencedLock, AsyncSetNxLock

REQ = {"model": "m", "messages": [{"role": "user", "content": "async"}]}


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    """Run one async test body on a fresh event loop."""
    asyncio.run(coro_fn())  # type: ignore[arg-type]


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Await a condition that has no event of its own (checks every 5 ms)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def test_async_get_set_delete_invalidate(r: redis.Redis, redis_node: Any) -> None:
    """The async API round-trips values and invalidates fleet-wide like the sync one."""

    async def body() -> None:
        client = redis_node.async_client()
        async with AsyncCache(client, namespace="a1") as a, \
                AsyncCache(redis_node.async_client(), namespace="a1") as b:
            assert await a.get(REQ) is MISS
            assert await a.set(REQ, {"v": 1})
            assert await b.get(REQ) == {"v": 1}
            gen = await a.invalidate()
            await until(lambda: b.generation == gen)
            assert await b.get(REQ) is MISS
            assert await b.get_or_set(REQ, lambda: asyncio.sleep(0, "new")) == "new"
            assert await a.delete(REQ)
            assert await a.get(REQ) is MISS
        await client.aclose()

    run(body)


def test_fifty_tasks_one_call(r: redis.Redis, redis_node: Any) -> None:
    """50 concurrent tasks on one missing key make one upstream call and agree."""

    async def body() -> None:
        calls = 0

        async def compute() -> dict[str, int]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.1)
            return {"answer": 42}

        async with AsyncCache(redis_node.async_client(), namespace="a2") as cache:
            results = await asyncio.gather(*(cache.get_or_set(REQ, compute) for _ in range(50)))
        assert calls == 1
        assert results == [{"answer": 42}] * 50
        assert cache.stats.coalesced == 49

    run(body)


def test_async_leader_failure_reaches_follower(r: redis.Redis, redis_node: Any) -> None:
    """The leader's exception reaches its caller; another cache's follower gets LeaderFailed."""

    async def body() -> None:
        release = asyncio.Event()

        async def failing() -> Any:
            await release.wait()
            raise RuntimeError("upstream 500")

        async with AsyncCache(redis_node.async_client(), namespace="a3") as a, \
                AsyncCache(redis_node.async_client(), namespace="a3") as b:
            ta = asyncio.create_task(a.get_or_set(REQ, failing))
            await until(lambda: len(a._flights) == 1 and a.generation is not None)
            lock = KeyLayout("a3").entry(request_hash(REQ), a.generation or 0).lock
            await until(lambda: r.exists(lock))
            tb = asyncio.create_task(b.get_or_set(REQ, lambda: asyncio.sleep(0, "B")))
            await until(lambda: b._notifier.waiting() == 1)
            release.set()
            with pytest.raises(RuntimeError, match="upstream 500"):
                await ta
            with pytest.raises(LeaderFailed) as info:
                await tb
            assert info.value.exc_type == "builtins.RuntimeError"

    run(body)


def test_cancelled_leader_hands_over_and_leaks_nothing(r: redis.Redis, redis_node: Any) -> None:
    """A leader task cancelled mid-compute releases its lease: one follower computes at once;
    afterwards no task, waiter or subscribed connection is left behind."""

    async def body() -> None:
        baseline = {t for t in asyncio.all_tasks()}
        started = asyncio.Event()
        computed: list[str] = []

        async def slow() -> str:
            computed.append("a")
            started.set()
            await asyncio.sleep(60)
            return "never"

        async def quick() -> str:
            computed.append("b")
            return "from b"

        policy = Policy(lock_ttl=30, poll_interval=20, wait_timeout=30)
        async with AsyncCache(redis_node.async_client(), namespace="a4", policy=policy) as a, \
                AsyncCache(redis_node.async_client(), namespace="a4", policy=policy) as b:
            ta = asyncio.create_task(a.get_or_set(REQ, slow))
            await started.wait()
            tb = asyncio.create_task(b.get_or_set(REQ, quick))
            await until(lambda: b._notifier.waiting() == 1)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            ta.cancel()
            with pytest.raises(asyncio.CancelledError):
                await ta
            assert await tb == "from b"
            handover = loop.time() - t0
            assert handover < 5, f"follower took {handover:.2f}s: it waited for its poll"
            assert computed == ["a", "b"]
            assert b.stats.takeovers == 1
            assert a._notifier.waiting() == 0
            assert b._notifier.waiting() == 0
            assert len(a._flights) == 0
            assert len(b._flights) == 0
        leftover = {t for t in asyncio.all_tasks()} - baseline - {asyncio.current_task()}
        assert leftover == set(), leftover
        subscribed = [c for c in r.client_list() if int(c.get("sub", 0)) > 0]
        assert subscribed == []

    run(body)


def test_async_long_compute_keeps_lease_fenced(r: redis.Redis, redis_node: Any) -> None:
    """A compute four lock TTLs long keeps its lease (watchdog task): one upstream call."""

    async def body() -> None:
        calls: list[str] = []

        async def slow() -> str:
            calls.append("x")
            await asyncio.sleep(1.2)
            return "slow"

        policy = Policy(lock_ttl=0.3, wait_timeout=10)
        ca, cb = redis_node.async_client(), redis_node.async_client()
        async with AsyncCache(ca, namespace="a5", lock=AsyncFencedLock(ca), policy=policy) as a, \
                AsyncCache(cb, namespace="a5", lock=AsyncFencedLock(cb), policy=policy) as b:
            results = await asyncio.gather(a.get_or_set(REQ, slow), b.get_or_set(REQ, slow))
        assert calls == ["x"]
        assert list(results) == ["slow", "slow"]
        await ca.aclose()
        await cb.aclose()

    run(body)


def test_async_cache_refuses_sync_client(r: redis.Redis) -> None:
    """AsyncCache with a sync redis.Redis raises TypeError at once."""
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        AsyncCache(r)  # type: ignore[arg-type]


def test_cancelled_followers_leave_nothing_behind(r: redis.Redis, redis_node: Any) -> None:
    """Followers cancelled while waiting (in-process and cross-process) leave no waiter,
    flight or task behind, and the leader still completes for the others."""

    async def body() -> None:
        baseline = set(asyncio.all_tasks())
        release = asyncio.Event()

        async def slow() -> str:
            await release.wait()
            return "done"

        async with AsyncCache(redis_node.async_client(), namespace="a6") as a, \
                AsyncCache(redis_node.async_client(), namespace="a6") as b:
            leader = asyncio.create_task(a.get_or_set(REQ, slow))
            await until(lambda: len(a._flights) == 1 and a.generation is not None)
            lock = KeyLayout("a6").entry(request_hash(REQ), a.generation or 0).lock
            await until(lambda: r.exists(lock))
            local = [asyncio.create_task(a.get_or_set(REQ, slow)) for _ in range(3)]
            remote = [asyncio.create_task(b.get_or_set(REQ, slow)) for _ in range(3)]
            await until(lambda: a._flights.waiting(a._flight_key(request_hash(REQ))) == 3
                        and b._notifier.waiting() == 1)
            for t in [*local[:2], *remote]:
                t.cancel()
            for t in [*local[:2], *remote]:
                with pytest.raises(asyncio.CancelledError):
                    await t
            assert b._notifier.waiting() == 0
            assert len(b._flights) == 0
            release.set()
            assert await leader == "done"
            assert await local[2] == "done"
            assert a._flights.waiting(a._flight_key(request_hash(REQ))) == 0
        leftover = set(asyncio.all_tasks()) - baseline - {asyncio.current_task()}
        assert leftover == set(), leftover

    run(body)


def test_async_busy_pool_is_load_not_an_outage(r: redis.Redis, redis_node: Any) -> None:
    """200 concurrent tasks over a 4-connection pool: every get is a hit, no fail-open."""

    async def body() -> None:
        client = redis_node.async_client(max_connections=4)
        async with AsyncCache(client, namespace="a7") as cache:
            await cache.set(REQ, "v")
            got = await asyncio.gather(*(cache.get(REQ) for _ in range(200)))
            assert list(got) == ["v"] * 200
            assert cache.stats.fail_open == 0
            assert cache.stats.backend_errors == 0
        await client.aclose()

    run(body)


def test_async_pool_at_its_cap_waits_then_gives_up(r: redis.Redis, redis_node: Any) -> None:
    """At its cap the cache's own pool makes a caller wait for a connection; one that never
    comes ends in fail-open after Policy.redis_timeout, not in a hang."""

    async def body() -> None:
        client = redis_node.async_client(max_connections=1)
        policy = Policy(redis_timeout=0.3)
        async with AsyncCache(client, namespace="a8", policy=policy) as cache:
            await cache.set(REQ, "v")
            own = cache._binding.store.redis
            assert isinstance(own, aioredis.Redis)
            pool = own.connection_pool
            held = await pool.get_connection()  # the only connection
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await cache.get(REQ) is MISS  # waited, then failed open
            assert 0.25 <= loop.time() - t0 < 2.0
            assert cache.stats.fail_open == 1
            await pool.release(held)
            cache._breaker.success()
            got = await asyncio.gather(*(cache.get(REQ) for _ in range(20)))
            assert list(got) == ["v"] * 20
        await client.aclose()

    run(body)


class SwallowingLock(AsyncSetNxLock):
    """A lock whose try_acquire swallows a cancellation once, as redis-py can when the
    cancellation races one of its own timeouts."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.inside = asyncio.Event()
        self.armed = False

    async def try_acquire(self, name: str, ttl: float) -> Any:
        if not self.armed:
            return await super().try_acquire(name, ttl)
        self.armed = False
        self.inside.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return None


def test_a_swallowed_cancellation_still_stops_the_follower(r: redis.Redis,
                                                          redis_node: Any) -> None:
    """A follower whose cancellation is swallowed inside the lock call still ends with
    CancelledError at once (checkpoint), leaving no waiter or flight behind."""

    async def body() -> None:
        release = asyncio.Event()

        async def slow() -> str:
            await release.wait()
            return "done"

        cb = redis_node.async_client()
        lock_b = SwallowingLock(cb)
        async with AsyncCache(redis_node.async_client(), namespace="a9") as a, \
                AsyncCache(cb, namespace="a9", lock=lock_b) as b:
            assert b.lock is not lock_b  # the cache's bounded copy, of the same class
            bound = b.lock
            assert isinstance(bound, SwallowingLock)
            lock_b = bound
            leader = asyncio.create_task(a.get_or_set(REQ, slow))
            await until(lambda: a.generation is not None)
            lock = KeyLayout("a9").entry(request_hash(REQ), a.generation or 0).lock
            await until(lambda: r.exists(lock))
            lock_b.armed = True
            follower = asyncio.create_task(b.get_or_set(REQ, slow))
            await lock_b.inside.wait()
            follower.cancel()
            done, _ = await asyncio.wait([follower], timeout=5)
            assert follower in done, "the follower went on after its cancellation"
            assert follower.cancelled()
            assert b._notifier.waiting() == 0
            assert len(b._flights) == 0
            release.set()
            assert await leader == "done"
        await cb.aclose()

    run(body)
