"""The process side of ``demo``: worker threads sending prompts through a cache.

Each worker process runs threads that send a skewed choice of prompts through fleetcache
(``get_or_set``) or through the naive wrapper (GET; on a miss compute, then SET).  The
simulated upstream sleeps, then counts itself in Redis, so the counts are fleet-wide.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from typing import Any

import orjson

from fleetcache import Cache, Policy
from fleetcache.cli.common import connect
from fleetcache.cli.fake_llm import fake_completion, make_request
from fleetcache.core.keys import request_hash

KEY_TTL_S = 3600


@dataclass(frozen=True)
class Workload:
    """Everything a worker process needs (picklable)."""

    url: str
    namespace: str
    mode: str
    threads: int
    prompts: int
    latency: float
    skew: float
    seed: int

    @property
    def counter_key(self) -> str:
        """INCRed by every upstream call."""
        return f"fcdemo:{self.namespace}:upstream"

    @property
    def per_prompt_key(self) -> str:
        """Hash: prompt number -> upstream calls for it."""
        return f"fcdemo:{self.namespace}:per-prompt"


@dataclass(frozen=True)
class Shared:
    """The cross-process objects of one run (handed to the workers when they spawn)."""

    barrier: Barrier
    done: Synchronized[int]
    results: multiprocessing.Queue[dict[str, Any]]


def worker_main(load: Workload, worker: int, counts: list[int], shared: Shared) -> None:
    """Worker process ``worker``: thread ``t`` sends ``counts[t]`` requests."""
    barrier, done, results = shared.barrier, shared.done, shared.results
    r = connect(load.url)
    cache = (
        Cache(r, namespace=load.namespace, policy=Policy(ttl=KEY_TTL_S))
        if load.mode == "fleetcache"
        else None
    )
    requests = [make_request(i) for i in range(load.prompts)]
    weights = [1.0 / (k + 1) ** load.skew for k in range(load.prompts)]
    latencies: list[float] = []
    errors: list[str] = []
    wrong = [0]
    guard = threading.Lock()

    def upstream(i: int) -> dict[str, Any]:
        time.sleep(load.latency)
        pipe = r.pipeline(transaction=False)
        pipe.incr(load.counter_key)
        pipe.hincrby(load.per_prompt_key, str(i), 1)
        pipe.expire(load.counter_key, KEY_TTL_S)
        pipe.expire(load.per_prompt_key, KEY_TTL_S)
        pipe.execute()
        return fake_completion(i)

    def naive(i: int) -> Any:
        key = f"fcdemo:{load.namespace}:naive:{request_hash(requests[i])}"
        raw = r.get(key)
        if raw is not None:
            return orjson.loads(raw)
        value = upstream(i)
        r.set(key, orjson.dumps(value), ex=KEY_TTL_S)
        return value

    def one(i: int) -> Any:
        if cache is not None:
            return cache.get_or_set(requests[i], lambda: upstream(i))
        return naive(i)

    def thread_main(t: int, n: int) -> None:
        rng = random.Random(f"{load.seed}:{worker}:{t}")  # same prompts in every mode
        for _ in range(n):
            i = rng.choices(range(load.prompts), weights)[0]
            start = time.perf_counter()
            try:
                value = one(i)
            except Exception as exc:
                with guard:
                    errors.append(f"{type(exc).__name__}: {exc}")
            else:
                elapsed = time.perf_counter() - start
                with guard:
                    latencies.append(elapsed)
                    wrong[0] += value != fake_completion(i)
            with done.get_lock():
                done.value += 1

    if cache is not None:
        cache.get({"warm-up": load.namespace})  # subscribe before the clock starts
    else:
        r.ping()
    barrier.wait()
    threads = [threading.Thread(target=thread_main, args=(t, n)) for t, n in enumerate(counts)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stats = cache.stats.snapshot() if cache is not None else {}
    if cache is not None:
        cache.close()
    results.put({"latencies": latencies, "errors": errors, "wrong": wrong[0], "stats": stats})
