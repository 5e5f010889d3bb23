"""A lock-contention worker process: acquire, check occupancy in Redis, record the fence.

Usage: python lock_worker.py --lock KIND --urls URL[,URL...] --name NAME --seconds S --id I
Waits for ``BLPOP NAME:go:I`` so that all workers start together, then until the deadline:
acquire, INCR the occupancy counter (a value other than 1 is a violation), RPUSH the fence
to ``NAME:fences`` while holding (so the list is in holding order), DECR, release.
Prints one JSON line: grants, violations, give-ups, wait p99.
"""

from __future__ import annotations

import argparse
import json
import time

import redis

from fleetcache import LockNotAcquired
from fleetcache.locking import FencedLock, RedisLockAdapter, Redlock, SetNxLock


def make_lock(kind: str, urls: list[str]) -> object:
    """The lock backend ``kind`` on the given node URLs."""
    clients = [redis.Redis.from_url(u, socket_timeout=0.5, socket_connect_timeout=0.5)
               for u in urls]
    if kind == "setnx":
        return SetNxLock(clients[0])
    if kind == "fenced":
        return FencedLock(clients[0])
    if kind == "redis-lock":
        return RedisLockAdapter(clients[0])
    return Redlock(clients)


def main() -> None:
    """Contend for the lock until the deadline and report."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--lock", required=True)
    ap.add_argument("--urls", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--wait", type=float, default=10.0)
    ap.add_argument("--id", required=True)
    args = ap.parse_args()
    urls = args.urls.split(",")
    lock: object = make_lock(args.lock, urls)
    bookkeeping = redis.Redis.from_url(urls[0], socket_timeout=5)
    bookkeeping.blpop([f"{args.name}:go:{args.id}"], timeout=60)
    deadline = time.monotonic() + args.seconds
    grants = violations = give_ups = 0
    waits: list[float] = []
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            lease = lock.acquire(args.name, 5.0, args.wait)  # type: ignore[attr-defined]
        except LockNotAcquired:
            give_ups += 1
            continue
        waits.append(time.monotonic() - t0)
        if bookkeeping.incr(f"{args.name}:occupancy") != 1:
            violations += 1
        bookkeeping.rpush(f"{args.name}:fences", -1 if lease.fence is None else lease.fence)
        grants += 1
        bookkeeping.decr(f"{args.name}:occupancy")
        lock.release(lease)  # type: ignore[attr-defined]
    waits.sort()
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))] if waits else 0.0
    print(json.dumps({"grants": grants, "violations": violations, "give_ups": give_ups,
                      "wait_p99": p99}), flush=True)


if __name__ == "__main__":
    main()
