"""The process side of ``bench fresh`` (threads on Zipf-distributed prompts), and its reduction.

A worker process runs ``threads`` callers for each variant in turn (the variants'
namespaces differ, so each starts cold).  Every caller draws prompt ranks from the same
Zipf(s) distribution over ``1..prompts`` (rank 1 the hottest; its own seeded stream) and
calls ``get_or_set`` in a loop, again as soon as the previous call returned: no think time,
so the load is as high as the machine allows and a caller blocked on a miss is one caller
not calling.  ``compute`` ``HINCRBY``s the variant's counter hash (field: the prompt rank)
*before* sleeping ``upstream`` seconds, so per-key upstream calls are read from Redis, not
trusted from the callers, and a call is counted in the window in which it started.

Each process reports, per variant, what its callers saw after the warm-up (latencies, the
keys and (key, ttl period) pairs they asked), a per-second timeline of the whole run, and
its cache's stats at the end of the warm-up and at the end; :func:`summarise` turns the
processes' reports and the counter hash into one variant's numbers (definitions: the
docstring of :mod:`fleetcache.cli.bench_fresh`).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import multiprocessing
import random
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from typing import Any

from fleetcache import Cache, Policy
from fleetcache.cli.common import connect, percentile

#: Variants of ``--variants``, in their default order.
VARIANTS = ("plain", "swr", "xfetch", "both")
#: The hottest prompts (ranks 1..50) reported on their own: they are requested continuously.
HOT_KEYS = 50
#: Seconds the counter hashes live (the bench deletes them at the end anyway).
COUNTER_TTL_S = 3600


class Zipf:
    """Zipf(s) over ranks ``1..n``: P(k) ∝ k^-s; sampled by bisecting a precomputed CDF."""

    def __init__(self, n: int, s: float) -> None:
        self.n = n
        self.cdf: list[float] = list(itertools.accumulate(math.pow(k, -s) for k in range(1, n + 1)))

    def probability(self, k: int) -> float:
        """P(rank ``k``)."""
        return (self.cdf[k - 1] - (self.cdf[k - 2] if k > 1 else 0.0)) / self.cdf[-1]

    def sample(self, rng: random.Random) -> int:
        """One rank in ``1..n``."""
        return min(self.n, bisect.bisect_right(self.cdf, rng.random() * self.cdf[-1]) + 1)


@dataclass(frozen=True)
class Setup:
    """What every worker process needs (picklable)."""

    url: str
    namespace: str
    variants: tuple[str, ...]
    threads: int
    prompts: int
    zipf: float
    ttl: float
    upstream: float
    warmup: float
    duration: float
    stale_ttl: float
    beta: float
    seed: int

    def policy(self, variant: str) -> Policy:
        """plain: TTL only; swr: + ``stale_ttl``; xfetch: + ``early_refresh``; both: both."""
        return Policy(
            ttl=self.ttl,
            stale_ttl=self.stale_ttl if variant in ("swr", "both") else 0.0,
            early_refresh=self.beta if variant in ("xfetch", "both") else 0.0,
        )

    def variant_namespace(self, variant: str) -> str:
        """The cache namespace of ``variant`` (its own: every variant starts cold)."""
        return f"{self.namespace}-{variant}"

    def counter_key(self, variant: str) -> str:
        """Hash of upstream calls per prompt rank, HINCRBY'd by every ``compute``."""
        return f"fcbench:{self.namespace}:{variant}:calls"


@dataclass
class Tally:
    """What one caller thread saw during one variant."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    seen: set[int] = field(default_factory=set)
    key_periods: set[tuple[int, int]] = field(default_factory=set)
    calls_per_s: list[int] = field(default_factory=list)
    misses_per_s: list[int] = field(default_factory=list)
    errors: int = 0
    wrong_values: int = 0
    first_error: str | None = None


def caller(  # noqa: PLR0917 - one caller's whole context
    setup: Setup,
    cache: Cache,
    compute: Callable[[int], dict[str, Any]],
    rng: random.Random,
    zipf: Zipf,
    t0: float,
    tally: Tally,
) -> None:
    """Call ``get_or_set`` on Zipf-drawn prompts from ``t0`` to the end of the variant."""
    warm_end, end = t0 + setup.warmup, t0 + setup.warmup + setup.duration
    threshold = setup.upstream / 2
    seconds = max(1, math.ceil(setup.warmup + setup.duration))
    tally.calls_per_s[:] = [0] * seconds
    tally.misses_per_s[:] = [0] * seconds
    while (start := time.monotonic()) < end:
        k = zipf.sample(rng)
        try:
            value = cache.get_or_set({"bench": "fresh", "prompt": k}, functools.partial(compute, k))
            if value.get("prompt") != k:
                tally.wrong_values += 1
        except Exception as exc:
            tally.errors += 1
            tally.first_error = tally.first_error or f"{type(exc).__name__}: {exc}"
        latency = time.monotonic() - start
        second = min(seconds - 1, int(start - t0))
        tally.calls_per_s[second] += 1
        tally.misses_per_s[second] += latency >= threshold
        if start >= warm_end:
            tally.latencies.append(latency)
            tally.seen.add(k)
            tally.key_periods.add((k, int((start - warm_end) / setup.ttl)))


def worker_main(
    setup: Setup,
    index: int,
    barrier: Barrier,
    go_at: Synchronized[float],
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """One process: for each variant, ``setup.threads`` callers from the common start."""
    r = connect(setup.url)
    zipf = Zipf(setup.prompts, setup.zipf)

    for variant in setup.variants:
        counter = setup.counter_key(variant)

        def compute(k: int, counter: str = counter) -> dict[str, Any]:
            pipe = r.pipeline(transaction=False)
            pipe.hincrby(counter, str(k), 1)
            pipe.expire(counter, COUNTER_TTL_S)
            pipe.execute()
            time.sleep(setup.upstream)
            return {"prompt": k, "completion": f"answer to prompt {k}", "at": time.time()}

        cache = Cache(r, namespace=setup.variant_namespace(variant), policy=setup.policy(variant))
        cache.get({"bench": "fresh", "warm-up": index})  # subscribe before the start
        barrier.wait()  # every process ready
        barrier.wait()  # the coordinator has set go_at
        t0 = go_at.value
        tallies = [Tally() for _ in range(setup.threads)]
        threads = [
            threading.Thread(
                target=caller,
                args=(
                    setup,
                    cache,
                    compute,
                    random.Random(f"{setup.seed}:{variant}:{index}:{i}"),
                    zipf,
                    t0,
                    tally,
                ),
                name=f"fresh-{variant}-{i}",
            )
            for i, tally in enumerate(tallies)
        ]
        time.sleep(max(0.0, t0 - time.monotonic()))
        for th in threads:
            th.start()
        time.sleep(max(0.0, t0 + setup.warmup - time.monotonic()))
        at_warm_end = cache.stats.snapshot()
        for th in threads:
            th.join()
        at_end = cache.stats.snapshot()
        results.put(_report(variant, index, tallies, at_warm_end, at_end))
        cache.close()
    r.close()


def _report(
    variant: str,
    index: int,
    tallies: list[Tally],
    at_warm_end: dict[str, int],
    at_end: dict[str, int],
) -> dict[str, Any]:
    latencies = array("d")
    for t in tallies:
        latencies.extend(t.latencies)
    errors = [t.first_error for t in tallies if t.first_error]
    return {
        "variant": variant,
        "process": index,
        "latencies": latencies.tobytes(),
        "seen": sorted(set().union(*(t.seen for t in tallies))),
        "key_periods": sorted(set().union(*(t.key_periods for t in tallies))),
        "calls_per_s": [sum(c) for c in zip(*(t.calls_per_s for t in tallies), strict=True)],
        "misses_per_s": [sum(c) for c in zip(*(t.misses_per_s for t in tallies), strict=True)],
        "errors": sum(t.errors for t in tallies),
        "wrong_values": sum(t.wrong_values for t in tallies),
        "first_error": errors[0] if errors else None,
        "stats": {k: at_end[k] - at_warm_end.get(k, 0) for k in at_end},
    }


def summarise(
    setup: Setup,
    variant: str,
    rows: list[dict[str, Any]],
    at_warm_end: dict[int, int],
    at_end: dict[int, int],
) -> dict[str, Any]:
    """One variant's numbers from the processes' reports and the counter hash."""
    latencies = array("d")
    for row in rows:
        latencies.frombytes(row["latencies"])
    lat = sorted(latencies)
    visible = len(lat) - bisect.bisect_left(lat, setup.upstream / 2)
    stats: dict[str, int] = {}
    for row in rows:
        for k, n in row["stats"].items():
            stats[k] = stats.get(k, 0) + n
    seen = set().union(*(row["seen"] for row in rows))
    key_periods = set().union(*(map(tuple, row["key_periods"]) for row in rows))
    calls = {k: n - at_warm_end.get(k, 0) for k, n in at_end.items()}
    upstream = sum(calls.values())
    periods = setup.duration / setup.ttl
    hot = min(HOT_KEYS, setup.prompts)
    hot_calls = [calls.get(k, 0) for k in range(1, hot + 1)]
    policy = setup.policy(variant)
    return {
        "variant": variant,
        "policy": {"ttl": policy.ttl, "stale_ttl": policy.stale_ttl,
                   "early_refresh": policy.early_refresh},
        "calls": len(lat),
        "visible_misses": visible,
        "visible_miss_rate": visible / len(lat) if lat else float("nan"),
        "cache_misses": stats.get("misses", 0),
        "cache_hits": stats.get("hits", 0),
        "latency_p50_s": percentile(lat, 50),
        "latency_p99_s": percentile(lat, 99),
        "latency_max_s": lat[-1] if lat else float("nan"),
        "upstream_calls": upstream,
        "upstream_calls_with_warmup": sum(at_end.values()),
        "keys_seen": len(seen),
        "active_key_periods": len(key_periods),
        "periods": periods,
        "upstream_per_key_period": upstream / (len(seen) * periods) if seen else float("nan"),
        "upstream_per_active_key_period": upstream / len(key_periods) if key_periods
        else float("nan"),
        "hot_keys": hot,
        "upstream_per_key_period_hot": sum(hot_calls) / (hot * periods),
        "upstream_per_period_hot_max": max(hot_calls) / periods,
        "stale_served": stats.get("stale_served", 0),
        "early_refreshes": stats.get("early_refreshes", 0),
        "refreshes": stats.get("refreshes", 0),
        "refresh_failures": stats.get("refresh_failures", 0),
        "errors": sum(row["errors"] for row in rows),
        "wrong_values": sum(row["wrong_values"] for row in rows),
        "first_error": next((row["first_error"] for row in rows if row["first_error"]), None),
        "calls_per_s": [sum(c) for c in zip(*(row["calls_per_s"] for row in rows), strict=True)],
        "visible_misses_per_s": [
            sum(c) for c in zip(*(row["misses_per_s"] for row in rows), strict=True)
        ],
        "cache_stats": stats,
    }
