"""A stampede worker process: T threads miss one key together through a Cache on Redlock.

Usage: python redlock_cache_worker.py --data URL --locks URL,URL,... --namespace NS
       --id I --threads T --rounds R --upstream S

The cache stores its data on ``--data``; its lock is a Redlock over the ``--locks`` masters.
After warming up, the worker RPUSHes its id to ``NS:ready``; then for each round it waits
for ``BLPOP NS:go:ROUND:I``, releases its T threads at once on a barrier, and each thread
calls ``get_or_set`` on the round's request.  The upstream call sleeps ``--upstream`` s and
INCRs ``NS:calls:ROUND`` (so upstream calls are counted in Redis).  Every caller RPUSHes
one JSON result (the value it got, or its error) to ``NS:results:ROUND``.  The "go" of
round R + 1 means stop: the worker then prints its cache stats as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import threading
import time
from functools import partial
from typing import Any

import redis

from fleetcache import Cache, Policy
from fleetcache.locking import Redlock

#: Per-node timeout of the Redlock clients (seconds).
LOCK_NODE_TIMEOUT = 0.3


def main() -> None:
    """Run the rounds and print the cache stats."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--locks", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--upstream", type=float, default=0.2)
    args = ap.parse_args()
    ns = args.namespace

    data = redis.Redis.from_url(args.data, socket_timeout=5, socket_connect_timeout=5)
    control = redis.Redis.from_url(args.data, socket_timeout=None, socket_connect_timeout=5)
    lock_clients = [
        redis.Redis.from_url(u, socket_timeout=LOCK_NODE_TIMEOUT,
                             socket_connect_timeout=LOCK_NODE_TIMEOUT)
        for u in args.locks.split(",")
    ]
    policy = Policy(ttl=600, lock_ttl=5.0, wait_timeout=30.0)
    cache = Cache(data, namespace=ns, lock=Redlock(lock_clients), policy=policy)
    cache.get_or_set({"warm-up": os.getpid()}, lambda: "warm")  # subscribe, load scripts

    barrier = threading.Barrier(args.threads + 1)
    current = {"round": 0}

    def compute(rnd: int) -> dict[str, Any]:
        time.sleep(args.upstream)
        data.incr(f"{ns}:calls:{rnd}")
        return {"round": rnd, "nonce": secrets.token_hex(8), "pid": os.getpid()}

    def caller() -> None:
        while True:
            barrier.wait()
            rnd = current["round"]
            if rnd < 0:
                return
            request = {"test": "redlock-stampede", "ns": ns, "round": rnd}
            try:
                value = cache.get_or_set(request, partial(compute, rnd))
                result: dict[str, Any] = {"value": value, "error": None}
            except Exception as exc:
                result = {"value": None, "error": f"{type(exc).__name__}: {exc}"}
            data.rpush(f"{ns}:results:{rnd}", json.dumps(result, sort_keys=True))

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(args.threads)]
    for th in threads:
        th.start()
    control.rpush(f"{ns}:ready", args.id)
    for rnd in range(1, args.rounds + 2):  # "go" for round R + 1 means: stop
        control.blpop([f"{ns}:go:{rnd}:{args.id}"], timeout=120)
        current["round"] = rnd if rnd <= args.rounds else -1
        barrier.wait()
    for th in threads:
        th.join()
    print(json.dumps(cache.stats.snapshot()), flush=True)
    cache.close()


if __name__ == "__main__":
    main()
