"""The process side of ``bench stampede``: callers that miss one key together, each round.

A worker process runs ``threads`` callers.  Each round every caller waits on the
cross-process barrier, sleeps until the round's common start instant, calls
``get_or_set`` on the round's fresh request and reports its latency, the time its
``compute`` took (only the leader runs it) and a digest of the value it got.  The asyncio
twin (``--async``) is :mod:`fleetcache.cli.async_stampede_worker`.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import secrets
import threading
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from typing import Any

import orjson

from fleetcache import Cache, Policy
from fleetcache.cli.common import connect
from fleetcache.cli.locks import SYNC_LOCKS, sync_clients

KEY_TTL_S = 600

#: Lock backends of ``--lock``: name -> factory taking the lock nodes' clients.
LOCKS = SYNC_LOCKS


@dataclass(frozen=True)
class Setup:
    """What every worker process needs (picklable)."""

    url: str
    namespace: str
    threads: int
    upstream: float
    lock_ttl: float
    lock: str
    #: The lock's nodes (Redlock: one per master); empty: the cache's Redis.
    lock_urls: tuple[str, ...] = ()

    @property
    def lock_nodes(self) -> tuple[str, ...]:
        """The URLs the lock runs on."""
        return self.lock_urls or (self.url,)

    def policy(self) -> Policy:
        """The cache policy of every caller."""
        return Policy(
            ttl=KEY_TTL_S, lock_ttl=self.lock_ttl, wait_timeout=max(30.0, 20 * self.upstream)
        )

    def counter_key(self, rnd: int) -> str:
        """INCRed by every upstream call of round ``rnd``."""
        return f"fcbench:{self.namespace}:calls:{rnd}"


def worker_main(
    setup: Setup,
    barrier: Barrier,
    current: Synchronized[int],
    go_at: Synchronized[float],
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """One process: ``setup.threads`` callers, one call each per round until round < 0."""
    r = connect(setup.url)
    lock = LOCKS[setup.lock](sync_clients(setup.lock_nodes))
    cache = Cache(r, namespace=setup.namespace, lock=lock, policy=setup.policy())
    warm = {"bench": "stampede", "warm-up": os.getpid()}
    cache.get_or_set(warm, lambda: "warm")  # subscribe, load the scripts

    def compute(rnd: int, box: list[float]) -> dict[str, Any]:
        start = time.monotonic()
        time.sleep(setup.upstream)
        pipe = r.pipeline(transaction=False)
        pipe.incr(setup.counter_key(rnd))
        pipe.expire(setup.counter_key(rnd), KEY_TTL_S)
        pipe.execute()
        done = time.monotonic()
        box.append(done - start)
        return {"round": rnd, "nonce": secrets.token_hex(8), "pid": os.getpid(), "done_at": done}

    def caller() -> None:
        cache.get(warm)  # one pooled connection per thread before round 1
        while True:
            barrier.wait()
            rnd, start_at = current.value, go_at.value
            if rnd < 0:
                return
            delay = start_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            box: list[float] = []
            request = {"bench": "stampede", "ns": setup.namespace, "round": rnd}
            start = time.monotonic()
            try:
                value = cache.get_or_set(request, functools.partial(compute, rnd, box))
                end = time.monotonic()
                digest, error = hashlib.sha256(orjson.dumps(value)).hexdigest(), None
                handoff = end - value["done_at"]
            except Exception as exc:
                end = time.monotonic()
                digest, error, handoff = "", f"{type(exc).__name__}: {exc}", None
            results.put(
                {
                    "round": rnd,
                    "start": start,
                    "latency": end - start,
                    "compute": box[0] if box else None,
                    "handoff": handoff,
                    "value": digest,
                    "error": error,
                }
            )

    threads = [threading.Thread(target=caller) for _ in range(setup.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    results.put({"round": -1, "stats": cache.stats.snapshot()})
    cache.close()
