"""The process side of ``bench stampede --async``: one event loop, T tasks per process.

The asyncio twin of :mod:`fleetcache.cli.stampede_worker`.  A process is one party of the
cross-process barrier (waited on in a thread, so the loop keeps serving the cache's
subscription); each round it reads the round's number and common start instant, starts
``setup.threads`` tasks that sleep until that instant and call ``await
cache.get_or_set(request, acompute)`` on the round's fresh request, and reports one row per
task in the same shape as the threaded worker.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import multiprocessing
import os
import secrets
import time
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from typing import Any

import orjson
from redis import asyncio as aioredis

from fleetcache import AsyncCache
from fleetcache.cli.locks import ASYNC_LOCKS, async_client, async_clients
from fleetcache.cli.stampede_worker import KEY_TTL_S, Setup


def worker_main(
    setup: Setup,
    barrier: Barrier,
    current: Synchronized[int],
    go_at: Synchronized[float],
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """One process: an event loop running ``setup.threads`` tasks per round."""
    asyncio.run(_main(setup, barrier, current, go_at, results))


async def _compute(r: aioredis.Redis, setup: Setup, rnd: int, box: list[float]) -> dict[str, Any]:
    """The upstream: sleep, count the call in Redis, return a value unique to this call."""
    start = time.monotonic()
    await asyncio.sleep(setup.upstream)
    pipe = r.pipeline(transaction=False)
    pipe.incr(setup.counter_key(rnd))
    pipe.expire(setup.counter_key(rnd), KEY_TTL_S)
    await pipe.execute()
    done = time.monotonic()
    box.append(done - start)
    return {"round": rnd, "nonce": secrets.token_hex(8), "pid": os.getpid(), "done_at": done}


async def _caller(
    cache: AsyncCache, r: aioredis.Redis, setup: Setup, rnd: int, start_at: float
) -> dict[str, Any]:
    """One task's call of round ``rnd``, started at ``start_at`` (monotonic)."""
    delay = start_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    box: list[float] = []
    request = {"bench": "stampede", "ns": setup.namespace, "round": rnd}
    start = time.monotonic()
    try:
        value = await cache.get_or_set(request, functools.partial(_compute, r, setup, rnd, box))
        end = time.monotonic()
        digest, error = hashlib.sha256(orjson.dumps(value)).hexdigest(), None
        handoff = end - value["done_at"]
    except Exception as exc:
        end = time.monotonic()
        digest, error, handoff = "", f"{type(exc).__name__}: {exc}", None
    return {
        "round": rnd,
        "start": start,
        "latency": end - start,
        "compute": box[0] if box else None,
        "handoff": handoff,
        "value": digest,
        "error": error,
    }


async def _main(
    setup: Setup,
    barrier: Barrier,
    current: Synchronized[int],
    go_at: Synchronized[float],
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    r = async_client(setup.url)
    lock = ASYNC_LOCKS[setup.lock](async_clients(setup.lock_nodes))
    cache = AsyncCache(r, namespace=setup.namespace, lock=lock, policy=setup.policy())
    warm = {"bench": "stampede", "warm-up": os.getpid()}

    async def warm_value() -> str:
        return "warm"

    await cache.get_or_set(warm, warm_value)  # subscribe, load the scripts
    # One pooled connection per task before round 1, as the threaded worker does.
    await asyncio.gather(*(cache.get(warm) for _ in range(setup.threads)))
    try:
        while True:
            await asyncio.to_thread(barrier.wait)
            rnd, start_at = current.value, go_at.value
            if rnd < 0:
                break
            rows = await asyncio.gather(
                *(_caller(cache, r, setup, rnd, start_at) for _ in range(setup.threads))
            )
            for row in rows:
                results.put(row)
        results.put({"round": -1, "stats": cache.stats.snapshot()})
    finally:
        await cache.close()
        await r.aclose()
