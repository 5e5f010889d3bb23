"""A leader process for fault tests: one get_or_set whose compute blocks.

The compute INCRs ``--counter`` (so the test sees it started), then either sleeps for a
minute (the test SIGKILLs it) or, with ``--go KEY``, blocks on ``BLPOP KEY`` until the
test pushes to it (the test SIGSTOPs and SIGCONTs it meanwhile) and returns ``--value``.
With ``--async`` the same runs on AsyncCache.  At the end it prints one JSON line: the
value get_or_set returned and the cache's stats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import redis
from redis import asyncio as aioredis

from fleetcache import AsyncCache, Cache, Policy
from fleetcache.locking import AsyncFencedLock, AsyncSetNxLock, FencedLock, SetNxLock


def main() -> None:
    """Run the blocking leader."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--counter", required=True)
    ap.add_argument("--request", default="leader")
    ap.add_argument("--lock-ttl", type=float, default=1.0)
    ap.add_argument("--lock", choices=["setnx", "fenced"], default="setnx")
    ap.add_argument("--go")
    ap.add_argument("--value", default="from the old leader")
    ap.add_argument("--async", dest="use_async", action="store_true")
    args = ap.parse_args()
    if args.use_async:
        asyncio.run(main_async(args))
        return
    client = redis.Redis.from_url(args.url, socket_timeout=2)
    blocking = redis.Redis.from_url(args.url, socket_timeout=None)
    lock = (FencedLock if args.lock == "fenced" else SetNxLock)(client)

    def compute() -> str:
        client.incr(args.counter)
        if args.go is None:
            time.sleep(60)
        else:
            blocking.blpop([args.go], timeout=60)
        return str(args.value)

    policy = Policy(lock_ttl=args.lock_ttl, wait_timeout=30)
    with Cache(client, namespace=args.namespace, lock=lock, policy=policy) as cache:
        value = cache.get_or_set({"prompt": args.request}, compute)
        print(json.dumps({"value": value, "stats": cache.stats.snapshot()}), flush=True)


async def main_async(args: argparse.Namespace) -> None:
    """The same leader on AsyncCache and the asyncio locks."""
    client = aioredis.Redis.from_url(args.url, socket_timeout=2)
    blocking = aioredis.Redis.from_url(args.url, socket_timeout=None)
    lock = (AsyncFencedLock if args.lock == "fenced" else AsyncSetNxLock)(client)

    async def compute() -> str:
        await client.incr(args.counter)
        if args.go is None:
            await asyncio.sleep(60)
        else:
            await blocking.blpop([args.go], timeout=60)
        return str(args.value)

    policy = Policy(lock_ttl=args.lock_ttl, wait_timeout=30)
    async with AsyncCache(client, namespace=args.namespace, lock=lock, policy=policy) as cache:
        value = await cache.get_or_set({"prompt": args.request}, compute)
        print(json.dumps({"value": value, "stats": cache.stats.snapshot()}), flush=True)


if __name__ == "__main__":
    main()
