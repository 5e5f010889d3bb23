"""``demo``: a small fleet of worker processes asks a simulated LLM overlapping prompts.

Every upstream call sleeps ``--latency`` seconds and counts itself in Redis (INCR of a
counter, HINCRBY per prompt), so the counts are fleet-wide and honest.  With fleetcache
each distinct prompt reaches the upstream once; ``--no-lock`` runs the classic naive
wrapper (GET, on a miss compute then SET) so that the duplicate calls show; ``--compare``
runs both back to back.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from fleetcache.cli.common import (
    Progress,
    connect,
    drop_keys,
    format_table,
    fresh_namespace,
    log,
    ms,
    pct,
    percentile,
    print_json,
    reap,
    redis_target,
)
from fleetcache.cli.demo_worker import Shared, Workload, worker_main

HELP = "run a small fleet of worker processes against a simulated LLM and count the calls"
MODES = ("fleetcache", "naive")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``demo``."""
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: start a local one)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    parser.add_argument("--requests", type=int, default=200, help="requests in total (200)")
    parser.add_argument("--prompts", type=int, default=20, help="distinct prompts (20)")
    parser.add_argument("--latency", type=float, default=0.3, help="upstream seconds (0.3)")
    parser.add_argument(
        "--skew", type=float, default=1.1, help="Zipf exponent of the prompt popularity (1.1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--no-lock",
        action="store_true",
        help="use the naive wrapper (GET; on a miss compute, SET) instead",
    )
    mode.add_argument("--compare", action="store_true", help="run fleetcache and naive")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.add_argument(
        "--keep-keys",
        action="store_true",
        help="leave the run's cache entries in Redis (they expire by their TTL)",
    )


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal non-negative integers."""
    base, extra = divmod(total, parts)
    return [base + (k < extra) for k in range(parts)]


def run_mode(args: argparse.Namespace, url: str, mode: str, quiet: bool) -> dict[str, Any]:
    """Run the workload once through ``mode`` and return its summary."""
    load = Workload(
        url,
        fresh_namespace(f"demo-{mode}"),
        mode,
        args.threads,
        args.prompts,
        args.latency,
        args.skew,
        args.seed,
    )
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(args.workers + 1)
    done: Synchronized[int] = ctx.Value("i", 0)
    results: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
    per_caller = split(args.requests, args.workers * args.threads)
    procs = [
        ctx.Process(
            target=worker_main,
            name=f"fleetcache-demo-{w}",
            daemon=True,
            args=(
                load,
                w,
                per_caller[w * args.threads : (w + 1) * args.threads],
                Shared(barrier, done, results),
            ),
        )
        for w in range(args.workers)
    ]
    r = connect(url)
    progress = Progress(enabled=not quiet, every=2.0)
    for p in procs:
        p.start()
    collected: list[dict[str, Any]] = []
    try:
        progress.update(f"[{mode}] starting {args.workers} worker processes...", force=True)
        barrier.wait(timeout=120)
        t0 = time.perf_counter()
        while len(collected) < len(procs):
            try:
                collected.append(results.get(timeout=0.1))
                continue
            except Exception:  # queue.Empty
                pass
            if all(not p.is_alive() for p in procs) and results.empty():
                break
            calls = int(r.get(load.counter_key) or 0)
            progress.update(
                f"[{mode}] {done.value}/{args.requests} requests, upstream calls so far: {calls}"
            )
        wall = time.perf_counter() - t0
    finally:
        reap(procs)
    calls = int(r.get(load.counter_key) or 0)
    progress.done(f"[{mode}] {done.value}/{args.requests} requests, upstream calls: {calls}")
    per_prompt = {int(k): int(v) for k, v in r.hgetall(load.per_prompt_key).items()}
    if getattr(args, "keep_keys", False):
        drop_keys(r, f"fcdemo:{load.namespace}:*")
    else:
        drop_keys(r, f"fc:{load.namespace}:*", f"fcdemo:{load.namespace}:*")
    r.close()
    latencies = [x for res in collected for x in res["latencies"]]
    errors = [e for res in collected for e in res["errors"]]
    stats: dict[str, int] = {}
    for res in collected:
        for k, v in res["stats"].items():
            stats[k] = stats.get(k, 0) + v
    served = len(latencies)
    summary: dict[str, Any] = {
        "mode": mode,
        "namespace": load.namespace,
        "requests": served,
        "errors": len(errors),
        "upstream_calls": calls,
        "calls_saved": served - calls,
        "hit_rate": (served - calls) / served if served else 0.0,
        "distinct_prompts_computed": len(per_prompt),
        "duplicate_upstream_calls": calls - len(per_prompt),
        "wrong_values": sum(res["wrong"] for res in collected),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "wall_s": wall,
        "workers_failed": len(procs) - len(collected),
    }
    if stats:
        summary["cache_stats"] = stats
    if errors:
        summary["first_errors"] = errors[:5]
    return summary


def _seconds(x: float) -> str:
    return f"{x:.2f} s"


#: The summary table: (label, summary key, formatter).
_TABLE: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("requests", "requests", str),
    ("upstream calls", "upstream_calls", str),
    ("calls saved", "calls_saved", str),
    ("hit rate", "hit_rate", pct),
    ("distinct prompts computed", "distinct_prompts_computed", str),
    ("duplicate upstream calls", "duplicate_upstream_calls", str),
    ("latency p50", "latency_p50_s", ms),
    ("latency p99", "latency_p99_s", ms),
    ("wall time", "wall_s", _seconds),
    ("errors", "errors", str),
    ("wrong values", "wrong_values", str),
)


def _rows(summaries: list[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = [
        [label, *(fmt(s[key]) for s in summaries)] for label, key, fmt in _TABLE
    ]
    if any("cache_stats" in s for s in summaries):
        for name in ("hits", "coalesced", "followed"):
            stat = [s.get("cache_stats", {}).get(name, "-") for s in summaries]
            rows.append([f"fleetcache stats: {name}", *stat])
    return rows


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit status 1 on errors or wrong values, 2 on bad arguments."""
    for name in ("workers", "threads", "requests", "prompts"):
        if getattr(args, name) < 1:
            log(f"--{name} must be at least 1")
            return 2
    if args.latency < 0:
        log("--latency must be >= 0")
        return 2
    modes = list(MODES) if args.compare else ["naive" if args.no_lock else "fleetcache"]
    with redis_target(args.redis, quiet=args.json) as url:
        summaries = [run_mode(args, url, mode, quiet=args.json) for mode in modes]
    if args.json:
        print_json(summaries[0] if len(summaries) == 1 else {"runs": summaries})
    else:
        print()
        print(
            f"{args.workers} processes x {args.threads} threads, {args.requests} requests "
            f"over {args.prompts} prompts, upstream latency {args.latency:g} s"
        )
        print(format_table(["", *(s["mode"] for s in summaries)], _rows(summaries)))
        for s in summaries:
            for err in s.get("first_errors", []):
                print(f"[{s['mode']}] error: {err}")
    bad = any(s["errors"] or s["wrong_values"] or s["workers_failed"] for s in summaries)
    return 1 if bad else 0
