"""One process of the fault soak: N threads calling get_or_set through a faulty link.

Phase 1 (``--duration`` seconds): every thread calls ``get_or_set`` on a random request of
a small set; ``compute`` takes 20 ms and returns a value derived from the request, so every
answer can be checked.  Each call's outcome and duration is recorded.  Phase 2 (after the
test healed the link): fill every entry, then time ``--hits`` hits.  Then it prints one
JSON line with its report and waits for a line on stdin before it closes the cache and
exits, so that the test can count the connections of a live, idle worker first.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from functools import partial
from typing import Any

import redis

from fleetcache import Cache, Policy, WaitTimeout


def expected(request: dict[str, Any]) -> str:
    """The value compute returns for ``request``: checkable by anyone."""
    i = int(request["i"])
    return f"value-{i}-" + "x" * (i * 37 % 300)


def upstream(request: dict[str, Any]) -> str:
    """The upstream call: 20 ms, then the expected value."""
    time.sleep(0.02)
    return expected(request)


def main() -> None:
    """Run the worker."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--hits", type=int, default=200)
    ap.add_argument("--redis-timeout", type=float, default=0.3)
    ap.add_argument("--wait-timeout", type=float, default=3.0)
    ap.add_argument("--bound", type=float, required=True)
    args = ap.parse_args()

    client = redis.Redis.from_url(args.url, socket_timeout=2, client_name=args.name)
    policy = Policy(
        redis_timeout=args.redis_timeout, wait_timeout=args.wait_timeout, lock_ttl=1.0,
        poll_interval=0.2, retry_backoff=0.1, retry_backoff_max=1.0, max_connections=8,
    )
    requests = [{"soak": "prompt", "i": i} for i in range(args.requests)]
    lock = threading.Lock()
    report: dict[str, Any] = {"calls": 0, "ok": 0, "wrong": [], "errors": {},
                              "max_seconds": 0.0, "over_bound": 0}
    stop_at = time.monotonic() + args.duration

    def record(seconds: float, outcome: str, detail: str = "") -> None:
        with lock:
            report["calls"] += 1
            report["max_seconds"] = max(report["max_seconds"], seconds)
            report["over_bound"] += seconds > args.bound
            if outcome == "ok":
                report["ok"] += 1
            elif outcome == "wrong":
                report["wrong"].append(detail)
            else:
                report["errors"][outcome] = report["errors"].get(outcome, 0) + 1

    def load(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            req = rng.choice(requests)
            start = time.monotonic()
            try:
                value = cache.get_or_set(req, partial(upstream, req))
            except WaitTimeout:
                record(time.monotonic() - start, "WaitTimeout")
                continue
            except Exception as exc:
                record(time.monotonic() - start, f"{type(exc).__module__}.{type(exc).__name__}")
                continue
            seconds = time.monotonic() - start
            if value == expected(req):
                record(seconds, "ok")
            else:
                record(seconds, "wrong", f"{req['i']}: {str(value)[:40]}")

    with Cache(client, namespace="soak", policy=policy) as cache:
        threads = [threading.Thread(target=load, args=(hash((args.name, n)),))
                   for n in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Phase 2: the link is healed; fill every entry, then time hits.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for req in requests:
                cache.get_or_set(req, partial(expected, req))
            if all(cache.get(req) == expected(req) for req in requests):
                break
        hits: list[float] = []
        misses = 0
        for n in range(args.hits):
            req = requests[n % len(requests)]
            start = time.perf_counter()
            value = cache.get(req)
            hits.append(time.perf_counter() - start)
            misses += value != expected(req)
        hits.sort()
        report["hit_misses"] = misses
        report["hit_median_ms"] = statistics.median(hits) * 1000
        report["hit_p99_ms"] = hits[int(len(hits) * 0.99) - 1] * 1000
        report["stats"] = cache.stats.snapshot()
        print(json.dumps(report), flush=True)
        sys.stdin.readline()
    client.close()


if __name__ == "__main__":
    main()
