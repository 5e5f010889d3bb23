"""``bench stampede``: P processes x T threads miss the same key at the same instant.

The processes are spawned once and kept across rounds.  Each round asks a fresh request;
every caller waits on a cross-process barrier (all callers and the coordinator), then
sleeps until a common start instant (CLOCK_MONOTONIC is system-wide), then calls
``get_or_set``.  The upstream sleeps ``--upstream`` seconds and INCRs a per-round counter
in Redis, so the number of upstream calls is read from Redis, not trusted from the callers.

Follower overhead = a caller's latency - the leader's upstream time (measured around the
compute).  Exit status 1 when any round made a number of upstream calls other than 1, or
callers got different values, or a call failed.

``--async``: each process runs one event loop with T tasks on :class:`fleetcache.AsyncCache`
(default 8 processes x 50 tasks; see :mod:`fleetcache.cli.async_stampede_worker`).
``--lock redlock``: the lock runs on 3 throwaway local nodes, or on ``--lock-urls``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from fleetcache.cli.common import (
    connect,
    drop_keys,
    format_table,
    fresh_namespace,
    log,
    ms,
    percentile,
    print_json,
    reap,
    redis_target,
)
from fleetcache.cli.locks import REDLOCK_NODES, lock_nodes, parse_urls
from fleetcache.cli.stampede_worker import LOCKS, Setup, worker_main

HELP = "P processes x T threads miss one key together: upstream calls and follower overhead"
#: Seconds between the barrier and the common start instant of a round.
START_MARGIN = 0.05


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench stampede``."""
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: start a local one)")
    parser.add_argument("--processes", type=int, default=8, help="worker processes (8)")
    parser.add_argument(
        "--threads",
        "--tasks",
        dest="threads",
        type=int,
        help="threads per process (4), or asyncio tasks per process with --async (50)",
    )
    parser.add_argument(
        "--async",
        dest="async_",
        action="store_true",
        help="asyncio: one event loop per process, AsyncCache and async locks",
    )
    parser.add_argument("--rounds", type=int, default=10, help="rounds, one key each (10)")
    parser.add_argument("--upstream", type=float, default=0.2, help="upstream seconds (0.2)")
    parser.add_argument("--lock-ttl", type=float, default=10.0, help="Policy.lock_ttl (10)")
    parser.add_argument(
        "--lock", default="fenced", choices=sorted(LOCKS),
        help="lock backend (fenced: the cache's default)"
    )
    parser.add_argument(
        "--lock-urls",
        metavar="URL,...",
        help="the lock's nodes (default: the cache's Redis; redlock: "
        f"{REDLOCK_NODES} throwaway local nodes)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def summarise_round(rnd: int, calls: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-round numbers from the callers' reports and the Redis counter."""
    computes = [row["compute"] for row in rows if row["compute"] is not None]
    upstream = max(computes) if computes else float("nan")
    overheads = [row["latency"] - upstream for row in rows if row["error"] is None]
    handoffs = [row["handoff"] for row in rows if row.get("handoff") is not None]
    starts = [row["start"] for row in rows]
    return {
        "round": rnd,
        "upstream_calls": calls,
        "upstream_s": upstream,
        "callers": len(rows),
        "errors": [row["error"] for row in rows if row["error"]],
        "equal_values": len({row["value"] for row in rows}) == 1
        and not any(row["error"] for row in rows),
        "overhead_p50_s": percentile(overheads, 50),
        "overhead_p99_s": percentile(overheads, 99),
        "overhead_max_s": max(overheads, default=float("nan")),
        "handoff_p50_s": percentile(handoffs, 50),
        "handoff_p99_s": percentile(handoffs, 99),
        "start_skew_s": max(starts) - min(starts),
        "_overheads": overheads,
        "_handoffs": handoffs,
    }


def run(args: argparse.Namespace) -> int:
    """Run the bench; exit status 1 when a round did not make exactly one upstream call."""
    if args.threads is None:
        args.threads = 50 if args.async_ else 4
    if min(args.processes, args.threads, args.rounds) < 1 or args.upstream < 0:
        log("--processes, --threads and --rounds must be >= 1, --upstream >= 0")
        return 2
    callers = args.processes * args.threads
    urls = parse_urls(args.lock_urls)
    n_nodes = len(urls) or (REDLOCK_NODES if args.lock == "redlock" else 0)
    with (
        redis_target(args.redis, quiet=args.json) as url,
        lock_nodes(n_nodes, urls, quiet=args.json) as lock_urls,
    ):
        setup = Setup(
            url,
            fresh_namespace("bench-stampede"),
            args.threads,
            args.upstream,
            args.lock_ttl,
            args.lock,
            tuple(lock_urls),
        )
        target: Any = worker_main
        if args.async_:
            from fleetcache.cli.async_stampede_worker import (  # noqa: PLC0415
                worker_main as target,
            )
        ctx = multiprocessing.get_context("spawn")
        # Threads wait on the barrier one by one; an event loop waits once for its tasks.
        barrier = ctx.Barrier((args.processes if args.async_ else callers) + 1)
        current: Synchronized[int] = ctx.Value("i", 0)
        go_at: Synchronized[float] = ctx.Value("d", 0.0)
        results: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
        procs = [
            ctx.Process(
                target=target,
                args=(setup, barrier, current, go_at, results),
                daemon=True,
                name=f"fleetcache-stampede-{i}",
            )
            for i in range(args.processes)
        ]
        r = connect(url)
        rounds: list[dict[str, Any]] = []
        stats: dict[str, int] = {}
        if not args.json:
            unit = "tasks" if args.async_ else "threads"
            log(f"starting {args.processes} processes x {args.threads} {unit}...")
        for p in procs:
            p.start()
        try:
            for rnd in range(1, args.rounds + 1):
                current.value, go_at.value = rnd, time.monotonic() + START_MARGIN
                barrier.wait(timeout=120 if rnd == 1 else 60)
                rows = [results.get(timeout=120) for _ in range(callers)]
                calls = int(r.get(setup.counter_key(rnd)) or 0)
                rounds.append(summarise_round(rnd, calls, rows))
                if not args.json:
                    log(f"round {rnd}/{args.rounds}: {calls} upstream call(s)")
            current.value = -1
            barrier.wait(timeout=60)
            for _ in procs:
                for k, v in results.get(timeout=30)["stats"].items():
                    stats[k] = stats.get(k, 0) + v
        finally:
            reap(procs)
            drop_keys(r, f"fc:{setup.namespace}:*", f"fcbench:{setup.namespace}:*")
            r.close()
            for lock_url in lock_urls:  # the lock's own nodes (Redlock): its keys and fences
                node = connect(lock_url)
                drop_keys(node, f"fc:{setup.namespace}:*")
                node.close()
    report = _report(args, rounds, stats, len(setup.lock_nodes))
    _print(args, report)
    ok = report["rounds_with_one_call"] == len(rounds) and report["all_values_equal"]
    return 0 if ok and not report["errors"] else 1


def _report(
    args: argparse.Namespace, rounds: list[dict[str, Any]], stats: dict[str, int], nodes: int
) -> dict[str, Any]:
    overheads = [x for rd in rounds for x in rd.pop("_overheads")]
    handoffs = [x for rd in rounds for x in rd.pop("_handoffs")]
    return {
        "config": {
            "processes": args.processes,
            "threads": args.threads,
            "rounds": args.rounds,
            "upstream_s": args.upstream,
            "lock_ttl_s": args.lock_ttl,
            "lock": args.lock,
            "lock_nodes": nodes,
            "async": args.async_,
        },
        "rounds": rounds,
        "rounds_with_one_call": sum(rd["upstream_calls"] == 1 for rd in rounds),
        "total_upstream_calls": sum(rd["upstream_calls"] for rd in rounds),
        "all_values_equal": all(rd["equal_values"] for rd in rounds),
        "errors": sum(len(rd["errors"]) for rd in rounds),
        "overhead_p50_s": percentile(overheads, 50),
        "overhead_p99_s": percentile(overheads, 99),
        "overhead_max_s": max(overheads, default=float("nan")),
        "handoff_p50_s": percentile(handoffs, 50),
        "handoff_p99_s": percentile(handoffs, 99),
        "handoff_max_s": max(handoffs, default=float("nan")),
        "start_skew_max_s": max((rd["start_skew_s"] for rd in rounds), default=float("nan")),
        "cache_stats": stats,
    }


def _print(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json:
        print_json(report)
        return
    rows = [
        [
            rd["round"],
            rd["upstream_calls"],
            ms(rd["upstream_s"]),
            ms(rd["overhead_p50_s"]),
            ms(rd["overhead_p99_s"]),
            ms(rd["overhead_max_s"]),
            ms(rd["start_skew_s"], 2),
            "yes" if rd["equal_values"] else "NO",
        ]
        for rd in report["rounds"]
    ]
    unit = "asyncio tasks" if args.async_ else "threads"
    nodes = report["config"]["lock_nodes"]
    print(
        f"\nbench stampede: {args.processes} processes x {args.threads} {unit}, "
        f"upstream {args.upstream:g} s, lock {args.lock} ({nodes} node{'s' * (nodes > 1)}), "
        f"lock_ttl {args.lock_ttl:g} s"
    )
    print(
        format_table(
            [
                "round",
                "upstream calls",
                "upstream time",
                "overhead p50",
                "overhead p99",
                "overhead max",
                "start skew",
                "equal values",
            ],
            rows,
        )
    )
    n = len(report["rounds"])
    stats = report["cache_stats"]
    print()
    print(
        format_table(
            ["overall", ""],
            [
                ["rounds with exactly 1 upstream call", f"{report['rounds_with_one_call']}/{n}"],
                ["upstream calls in total", report["total_upstream_calls"]],
                ["follower overhead p50", ms(report["overhead_p50_s"])],
                ["follower overhead p99", ms(report["overhead_p99_s"])],
                ["follower overhead max", ms(report["overhead_max_s"])],
                ["hand-off p50", ms(report["handoff_p50_s"])],
                ["hand-off p99", ms(report["handoff_p99_s"])],
                ["hand-off max", ms(report["handoff_max_s"])],
                ["all callers got equal values", "yes" if report["all_values_equal"] else "NO"],
                ["errors", report["errors"]],
                ["start skew max", ms(report["start_skew_max_s"], 2)],
                [
                    "served by another process / " + ("task" if args.async_ else "thread"),
                    f"{stats.get('followed', 0)} / {stats.get('coalesced', 0)}",
                ],
            ],
        )
    )
    print("overhead = caller latency - the leader's upstream time (measured around compute)")
    print("hand-off = caller return - the leader's compute end (CLOCK_MONOTONIC, system-wide):")
    print("  the delay after the value exists, without the callers' start skew")
    for rd in report["rounds"]:
        for err in rd["errors"][:3]:
            print(f"round {rd['round']} error: {err}")
