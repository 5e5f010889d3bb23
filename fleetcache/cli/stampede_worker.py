"""The process side of ``bench stampede``: callers that miss the same keys together, each round.

A worker process runs ``threads`` callers.  Each round every caller waits on the
cross-process barrier, sleeps until the round's common start instant, then asks
``setup.asks`` of the round's ``setup.keys`` fresh requests (a random sample; one of one by
default), one ``get_or_set`` after the other, and reports for each its latency, the time
its ``compute`` took (only a key's leader runs it), a digest of the value it got and the
shard subscription connections its process holds (``Shards.links()``, 0 on one node).
Every upstream call is one ``HINCRBY`` of the round's per-key counter hash.  On a cluster
(``setup.cluster``) the worker uses a ``RedisCluster`` client and, unless the lock has
nodes of its own, the lock runs on that client.  The asyncio twin (``--async``, one key
per round on one node) is :mod:`fleetcache.cli.async_stampede_worker`.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from typing import Any

import orjson
import redis

from fleetcache import Cache, Policy
from fleetcache.cli.common import connect_any, connect_cluster
from fleetcache.cli.locks import SYNC_LOCKS, sync_clients
from fleetcache.core.keys import request_hash
from fleetcache.locking import FencedLock, Lock, SetNxLock

KEY_TTL_S = 600

#: Lock backends of ``--lock``: name -> factory taking the lock nodes' clients.
LOCKS = SYNC_LOCKS
#: Lock backends on a cluster client (Redlock needs independent nodes: ``--lock-urls``).
CLUSTER_LOCKS: dict[str, Callable[[redis.RedisCluster], Lock]] = {
    "setnx": SetNxLock,
    "fenced": FencedLock,
}


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
    #: Distinct missing keys per round, and how many of them each caller asks (a sample).
    keys: int = 1
    asks: int = 1
    #: The URL names a Redis Cluster node: cluster clients, the lock on the cluster client.
    cluster: bool = False

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
        """INCRed by every upstream call of round ``rnd`` (the asyncio worker's counter)."""
        return f"fcbench:{self.namespace}:calls:{rnd}"

    def calls_key(self, rnd: int) -> str:
        """The hash of round ``rnd``'s upstream calls per key (field: the key's index),
        created with its TTL by the coordinator; each upstream call is one HINCRBY."""
        return f"fcbench:{self.namespace}:calls:{rnd}:by-key"

    def request(self, rnd: int, key: int) -> dict[str, Any]:
        """The request of key ``key`` of round ``rnd``."""
        return {"bench": "stampede", "ns": self.namespace, "round": rnd, "key": key}


def connect_for(setup: Setup) -> redis.Redis | redis.RedisCluster:
    """The worker's client: a cluster client when the bench runs on a cluster."""
    return connect_cluster(setup.url) if setup.cluster else connect_any(setup.url)


def lock_for(setup: Setup, r: redis.Redis | redis.RedisCluster) -> Lock:
    """The lock of ``setup.lock``: on the lock nodes, or on the cluster client itself (its
    fence counters then sit in each lock key's slot)."""
    if isinstance(r, redis.RedisCluster) and not setup.lock_urls:
        if setup.lock not in CLUSTER_LOCKS:
            raise ValueError(f"--lock {setup.lock} needs independent nodes (--lock-urls)")
        return CLUSTER_LOCKS[setup.lock](r)
    return LOCKS[setup.lock](sync_clients(setup.lock_nodes))


def warm_requests(r: redis.Redis | redis.RedisCluster, pid: int) -> list[dict[str, Any]]:
    """Warm-up requests: one, or on a cluster one whose entry sits on each master (so
    every thread holds a pooled connection to every master before round 1)."""
    first: dict[str, Any] = {"bench": "stampede", "warm-up": pid}
    if not isinstance(r, redis.RedisCluster):
        return [first]
    wanted = {str(node.name) for node in r.get_primaries()}
    found: dict[str, dict[str, Any]] = {}
    for i in range(100_000):
        request = {**first, "i": i}
        node = r.get_node_from_key("{" + request_hash(request) + "}")
        found.setdefault(str(node.name), request)
        if set(found) >= wanted:
            break
    return list(found.values())


def worker_main(
    setup: Setup,
    barrier: Barrier,
    current: Synchronized[int],
    go_at: Synchronized[float],
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """One process: ``setup.threads`` callers; each round every caller asks ``setup.asks``
    of the round's ``setup.keys`` keys, one after the other, until round < 0."""
    r = connect_for(setup)
    cache = Cache(r, namespace=setup.namespace, lock=lock_for(setup, r), policy=setup.policy())
    pid = os.getpid()
    warm = warm_requests(r, pid)
    for request in warm:
        cache.get_or_set(request, lambda: "warm")  # subscribe, load the scripts

    def links() -> int:
        return cache._binding.shards.links()

    def compute(rnd: int, key: int, box: list[float]) -> dict[str, Any]:
        start = time.monotonic()
        time.sleep(setup.upstream)
        r.hincrby(setup.calls_key(rnd), str(key), 1)
        done = time.monotonic()
        box.append(done - start)
        return {"round": rnd, "key": key, "nonce": secrets.token_hex(8), "pid": pid,
                "done_at": done}

    def ask(rnd: int, key: int, index: int) -> dict[str, Any]:
        box: list[float] = []
        start = time.monotonic()
        try:
            value = cache.get_or_set(setup.request(rnd, key),
                                     functools.partial(compute, rnd, key, box))
            end = time.monotonic()
            digest, error = hashlib.sha256(orjson.dumps(value)).hexdigest(), None
            # A hand-off: the value came after the caller asked (the first ask of every
            # caller is released with all the others; a later one may find it made).
            waited = index == 0 or start < value["done_at"]
            handoff = end - value["done_at"] if waited else None
        except Exception as exc:
            end = time.monotonic()
            digest, error, handoff = "", f"{type(exc).__name__}: {exc}", None
        return {
            "round": rnd,
            "key": key,
            "ask": index,
            "pid": pid,
            "start": start,
            "latency": end - start,
            "compute": box[0] if box else None,
            "handoff": handoff,
            "value": digest,
            "error": error,
            "links": links(),
        }

    def caller() -> None:
        for request in warm:
            cache.get(request)  # one pooled connection per thread (per master) before round 1
        if isinstance(r, redis.RedisCluster):  # and for the upstream's counter (PING: uncounted)
            r.ping(target_nodes=redis.RedisCluster.PRIMARIES)
        else:
            r.ping()
        rng = random.Random()
        while True:
            barrier.wait()
            rnd, start_at = current.value, go_at.value
            if rnd < 0:
                return
            delay = start_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for index, key in enumerate(rng.sample(range(setup.keys), setup.asks)):
                results.put(ask(rnd, key, index))

    threads = [threading.Thread(target=caller) for _ in range(setup.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    results.put({"round": -1, "stats": cache.stats.snapshot(), "pid": pid, "links": links(),
                 "namespace_subscribed": cache.subscribed})
    cache.close()
    r.close()
