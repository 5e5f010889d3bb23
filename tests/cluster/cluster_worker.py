"""A worker process for the Cluster tests: threads stampeding on many keys at once.

Every round, every thread says it is ready (INCR ``--ready``), waits for a token on
``--go`` (BLPOP; both keys share a hash tag), then asks every one of ``--keys`` requests in
its own random order.  ``compute`` INCRs the request's counter in the cluster (the upstream
calls, counted in Redis), sleeps ``--upstream`` seconds and returns a value naming this
process and thread, so that equal values mean one computation.  The process prints one JSON
line: per round, per key, the values its threads got, and errors.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import threading
import time
from typing import Any

import redis

from fleetcache import Cache, Policy


def request(rnd: int, key: int) -> dict[str, Any]:
    """The request of key ``key`` in round ``rnd``."""
    return {"round": rnd, "key": key, "prompt": f"cluster stampede {key}"}


def counter(namespace: str, rnd: int, key: int) -> str:
    """The upstream-call counter of one request (spread over the cluster by its own name)."""
    return f"count:{namespace}:{rnd}:{key}"


def main() -> None:
    """Run the worker."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--keys", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--upstream", type=float, default=0.05)
    ap.add_argument("--wait-timeout", type=float, default=30.0)
    ap.add_argument("--redis-timeout", type=float, default=1.0)
    args = ap.parse_args()
    control = redis.RedisCluster.from_url(args.url, socket_timeout=120)
    policy = Policy(ttl=300, wait_timeout=args.wait_timeout, redis_timeout=args.redis_timeout)
    cache = Cache(redis.RedisCluster.from_url(args.url), namespace=args.namespace, policy=policy)
    cache.get({"warm": "up"})
    tag = "{" + args.namespace + "}"
    guard = threading.Lock()
    rounds: list[dict[str, list[str]]] = [{} for _ in range(args.rounds)]
    errors: list[str] = []

    def compute(rnd: int, key: int) -> str:
        control.incr(counter(args.namespace, rnd, key))
        control.expire(counter(args.namespace, rnd, key), 600)
        time.sleep(args.upstream)
        return f"{os.getpid()}:{threading.get_ident()}:{rnd}:{key}"

    def thread_main(t: int) -> None:
        rng = random.Random(f"{os.getpid()}:{t}")
        for rnd in range(args.rounds):
            control.incr(f"ready:{tag}:{rnd}")
            control.blpop([f"go:{tag}:{rnd}"], timeout=120)
            for key in rng.sample(range(args.keys), args.keys):
                try:
                    value = cache.get_or_set(request(rnd, key),
                                             functools.partial(compute, rnd, key))
                except Exception as exc:
                    with guard:
                        errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    with guard:
                        rounds[rnd].setdefault(str(key), []).append(str(value))

    threads = [threading.Thread(target=thread_main, args=(t,)) for t in range(args.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    report = {
        "rounds": rounds,
        "errors": errors,
        "stats": cache.stats.snapshot(),
        "shard_links": cache._binding.shards.links(),
    }
    cache.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
