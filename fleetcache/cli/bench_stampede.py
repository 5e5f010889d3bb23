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
import statistics
import time
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import redis

from fleetcache.cli.bench_cluster import cluster_target, not_work, open_cluster
from fleetcache.cli.common import (
    command_counts,
    connect,
    connect_any,
    drop_keys,
    format_table,
    fresh_namespace,
    log,
    master_clients,
    ms,
    percentile,
    print_json,
    reap,
    redis_target,
)
from fleetcache.cli.locks import REDLOCK_NODES, lock_nodes, parse_urls
from fleetcache.cli.stampede_worker import KEY_TTL_S, LOCKS, Setup, worker_main

HELP = "P processes x T threads miss one key together: upstream calls and follower overhead"
#: Seconds between the barrier and the common start instant of a round.
START_MARGIN = 0.05
#: The hand-off goal of a run with --cluster / --keys (p99, seconds).
HANDOFF_TARGET_P99 = 0.010
#: The field that creates a round's call counter hash (not a key index).
_PLACEHOLDER = "-"


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
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="Redis Cluster: cluster clients, commands summed over every master, shard "
        "subscriptions counted (default: start a throwaway 3-master cluster)",
    )
    parser.add_argument(
        "--keys", type=int, default=1, help="distinct missing keys per round (1)"
    )
    parser.add_argument(
        "--asks",
        type=int,
        help="keys each caller asks per round, a random sample, one after the other "
        "(min(--keys, 10))",
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


def summarise_wide_round(
    rnd: int, calls: dict[int, int], rows: list[dict[str, Any]], commands: dict[str, int]
) -> dict[str, Any]:
    """Per-round numbers of a run with many keys (or on a cluster): upstream calls per key
    asked, hand-offs, and the Redis commands per request (``commands``: the round's
    commandstats deltas of every master, the bench's own HINCRBYs included)."""
    by_key: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(int(row["key"]), []).append(row)
    overheads: list[float] = []
    upstreams: list[float] = []
    equal = True
    for key_rows in by_key.values():
        computes = [row["compute"] for row in key_rows if row["compute"] is not None]
        upstream = max(computes) if computes else float("nan")
        upstreams += computes
        overheads += [row["latency"] - upstream for row in key_rows if row["handoff"] is not None]
        equal = equal and len({row["value"] for row in key_rows}) == 1
    errors = [row["error"] for row in rows if row["error"]]
    handoffs = [row["handoff"] for row in rows if row["handoff"] is not None]
    starts = [row["start"] for row in rows if row["ask"] == 0]
    asked = sorted(by_key)
    per_key = [calls.get(key, 0) for key in asked]
    unasked_calls = sum(n for key, n in calls.items() if key not in by_key)
    work = dict(commands)
    bench = work.pop("hincrby", 0)  # the upstream's call counter (the cache never HINCRBYs)
    requests = len(rows)
    links: dict[int, int] = {}
    for row in rows:
        links[row["pid"]] = max(links.get(row["pid"], 0), int(row["links"]))
    return {
        "round": rnd,
        "keys_asked": len(asked),
        "keys_with_one_call": sum(n == 1 for n in per_key),
        "upstream_calls": sum(calls.values()),
        "calls_per_key": sum(per_key) / len(asked) if asked else float("nan"),
        "max_calls_per_key": max(per_key, default=0),
        "calls_for_unasked_keys": unasked_calls,
        "one_call_per_key": all(n == 1 for n in per_key) and not unasked_calls,
        "requests": requests,
        "upstream_s": statistics.median(upstreams) if upstreams else float("nan"),
        "errors": errors,
        "equal_values": equal and not errors,
        "overhead_p50_s": percentile(overheads, 50),
        "overhead_p99_s": percentile(overheads, 99),
        "handoffs": len(handoffs),
        "handoff_p50_s": percentile(handoffs, 50),
        "handoff_p99_s": percentile(handoffs, 99),
        "start_skew_s": max(starts) - min(starts) if starts else float("nan"),
        "redis_commands": sum(work.values()),
        "commands_per_request": sum(work.values()) / requests if requests else float("nan"),
        "commands": dict(sorted(work.items(), key=lambda item: -item[1])),
        "bench_commands": bench,
        "links_per_process_max": max(links.values(), default=0),
        "_links": links,
        "_overheads": overheads,
        "_handoffs": handoffs,
    }


def _work(before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]) -> dict[str, int]:
    """Commands run between two :func:`command_counts`, summed over the masters, without
    what is no client's work (INFO, PING, CLUSTER, COMMAND, REPLCONF)."""
    work: dict[str, int] = {}
    for (node, cmd), calls in after.items():
        delta = calls - before.get((node, cmd), 0)
        if delta > 0 and not not_work(cmd):
            work[cmd] = work.get(cmd, 0) + delta
    return work


def _open_counter(r: redis.Redis | redis.RedisCluster, setup: Setup, rnd: int) -> None:
    """Create round ``rnd``'s per-key call counter with its TTL (a placeholder field), so
    that an upstream call is one HINCRBY."""
    pipe = r.pipeline(transaction=False) if isinstance(r, redis.Redis) else r.pipeline()
    pipe.hset(setup.calls_key(rnd), _PLACEHOLDER, 0)
    pipe.expire(setup.calls_key(rnd), KEY_TTL_S)
    pipe.execute()


def _read_calls(
    r: redis.Redis | redis.RedisCluster, setup: Setup, rnd: int, async_: bool
) -> dict[int, int]:
    """Upstream calls of round ``rnd`` per key index, as counted in Redis."""
    if async_:
        return {0: int(r.get(setup.counter_key(rnd)) or 0)}
    raw: dict[Any, Any] = r.hgetall(setup.calls_key(rnd))
    placeholder = (_PLACEHOLDER, _PLACEHOLDER.encode())
    return {int(k): int(v) for k, v in raw.items() if k not in placeholder}


def _connect(args: argparse.Namespace, url: str) -> redis.Redis | redis.RedisCluster | None:
    if args.cluster:
        return open_cluster(url)
    return connect_any(url)


def run(args: argparse.Namespace) -> int:
    """Run the bench; exit status 1 when a round did not make exactly one upstream call
    (per key asked), 2 on bad options."""
    if args.threads is None:
        args.threads = 50 if args.async_ else 4
    if min(args.processes, args.threads, args.rounds) < 1 or args.upstream < 0:
        log("--processes, --threads and --rounds must be >= 1, --upstream >= 0")
        return 2
    if args.keys < 1:
        log("--keys must be >= 1")
        return 2
    if args.asks is None:
        args.asks = min(args.keys, 10)
    if not 1 <= args.asks <= args.keys:
        log("--asks must be within [1, --keys]")
        return 2
    wide = args.cluster or args.keys > 1 or args.asks > 1
    if args.async_ and wide:
        log("bench stampede: --async runs one key per round on one Redis node; "
            "--cluster, --keys and --asks need the threaded callers (drop --async)")
        return 2
    callers = args.processes * args.threads
    urls = parse_urls(args.lock_urls)
    n_nodes = len(urls) or (REDLOCK_NODES if args.lock == "redlock" else 0)
    target = cluster_target if args.cluster else redis_target
    with (
        target(args.redis, quiet=args.json) as url,
        lock_nodes(n_nodes, urls, quiet=args.json) as lock_urls,
    ):
        r = _connect(args, url)
        if r is None:
            return 2
        on_cluster = isinstance(r, redis.RedisCluster)
        if on_cluster and args.async_:
            log(f"bench stampede: {url} is a Redis Cluster node; --async runs on one node only")
            r.close()
            return 2
        wide = wide or on_cluster
        setup = Setup(
            url,
            fresh_namespace("bench-stampede"),
            args.threads,
            args.upstream,
            args.lock_ttl,
            args.lock,
            tuple(lock_urls),
            keys=args.keys,
            asks=args.asks,
            cluster=on_cluster,
        )
        worker: Any = worker_main
        if args.async_:
            from fleetcache.cli.async_stampede_worker import (  # noqa: PLC0415
                worker_main as worker,
            )
        ctx = multiprocessing.get_context("spawn")
        # Threads wait on the barrier one by one; an event loop waits once for its tasks.
        barrier = ctx.Barrier((args.processes if args.async_ else callers) + 1)
        current: Synchronized[int] = ctx.Value("i", 0)
        go_at: Synchronized[float] = ctx.Value("d", 0.0)
        results: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
        procs = [
            ctx.Process(
                target=worker,
                args=(setup, barrier, current, go_at, results),
                daemon=True,
                name=f"fleetcache-stampede-{i}",
            )
            for i in range(args.processes)
        ]
        masters = len(master_clients(r))
        rounds: list[dict[str, Any]] = []
        stats: dict[str, int] = {}
        ends: list[dict[str, Any]] = []
        if not args.json:
            unit = "tasks" if args.async_ else "threads"
            log(f"starting {args.processes} processes x {args.threads} {unit}...")
        for p in procs:
            p.start()
        try:
            for rnd in range(1, args.rounds + 1):
                if not args.async_:
                    _open_counter(r, setup, rnd)
                before = command_counts(r) if wide else {}
                current.value, go_at.value = rnd, time.monotonic() + START_MARGIN
                barrier.wait(timeout=120 if rnd == 1 else 60)
                rows = [results.get(timeout=120) for _ in range(callers * args.asks)]
                after = command_counts(r) if wide else {}
                calls = _read_calls(r, setup, rnd, args.async_)
                if wide:
                    rd = summarise_wide_round(rnd, calls, rows, _work(before, after))
                    rounds.append(rd)
                    if not args.json:
                        log(f"round {rnd}/{args.rounds}: {rd['upstream_calls']} upstream "
                            f"call(s) for {rd['keys_asked']} key(s) asked, "
                            f"{rd['keys_with_one_call']} with exactly one; "
                            f"{rd['commands_per_request']:.2f} Redis commands/request")
                else:
                    rounds.append(summarise_round(rnd, sum(calls.values()), rows))
                    if not args.json:
                        log(f"round {rnd}/{args.rounds}: {sum(calls.values())} upstream call(s)")
            current.value = -1
            barrier.wait(timeout=60)
            for _ in procs:
                end = results.get(timeout=30)
                ends.append(end)
                for k, v in end["stats"].items():
                    stats[k] = stats.get(k, 0) + v
        finally:
            reap(procs)
            drop_keys(r, f"fc:{setup.namespace}:*", f"fcbench:{setup.namespace}:*")
            r.close()
            for lock_url in lock_urls:  # the lock's own nodes (Redlock): its keys and fences
                node = connect(lock_url)
                drop_keys(node, f"fc:{setup.namespace}:*")
                node.close()
    if wide:
        report = _report_wide(args, rounds, stats, ends, setup, masters)
        _print_wide(args, report)
        ok = report["rounds_with_one_call"] == len(rounds) and report["all_values_equal"]
        ok = ok and report["links_per_process_max"] <= masters
        return 0 if ok and not report["errors"] else 1
    report = _report(args, rounds, stats, len(setup.lock_nodes))
    _print(args, report)
    ok = report["rounds_with_one_call"] == len(rounds) and report["all_values_equal"]
    return 0 if ok and not report["errors"] else 1


def _config(args: argparse.Namespace, nodes: int) -> dict[str, Any]:
    """The run's options, as every report states them."""
    return {
        "processes": args.processes,
        "threads": args.threads,
        "rounds": args.rounds,
        "upstream_s": args.upstream,
        "lock_ttl_s": args.lock_ttl,
        "lock": args.lock,
        "lock_nodes": nodes,
        "async": args.async_,
    }


def _report(
    args: argparse.Namespace, rounds: list[dict[str, Any]], stats: dict[str, int], nodes: int
) -> dict[str, Any]:
    overheads = [x for rd in rounds for x in rd.pop("_overheads")]
    handoffs = [x for rd in rounds for x in rd.pop("_handoffs")]
    return {
        "config": _config(args, nodes),
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


def _report_wide(  # noqa: PLR0917 - the pieces of one report
    args: argparse.Namespace,
    rounds: list[dict[str, Any]],
    stats: dict[str, int],
    ends: list[dict[str, Any]],
    setup: Setup,
    masters: int,
) -> dict[str, Any]:
    overheads = [x for rd in rounds for x in rd.pop("_overheads")]
    handoffs = [x for rd in rounds for x in rd.pop("_handoffs")]
    requests = sum(rd["requests"] for rd in rounds)
    commands = sum(rd["redis_commands"] for rd in rounds)
    mix: dict[str, int] = {}
    for rd in rounds:
        for cmd, n in rd["commands"].items():
            mix[cmd] = mix.get(cmd, 0) + n
    links: dict[int, int] = {}
    for rd in rounds:
        for pid, n in rd.pop("_links").items():
            links[pid] = max(links.get(pid, 0), n)
    for end in ends:
        pid = int(end.get("pid", 0))
        links[pid] = max(links.get(pid, 0), int(end.get("links", 0)))
    subscribed = {int(end.get("pid", 0)): bool(end.get("namespace_subscribed")) for end in ends}
    connections = {pid: n + subscribed.get(pid, False) for pid, n in links.items()}
    asked = sum(rd["keys_asked"] for rd in rounds)
    calls_asked = sum(rd["calls_per_key"] * rd["keys_asked"] for rd in rounds if rd["keys_asked"])
    return {
        "config": {
            **_config(args, len(setup.lock_urls)),
            "keys": args.keys,
            "asks": args.asks,
            "cluster": setup.cluster,
            "masters": masters,
            "namespace": setup.namespace,
        },
        "rounds": rounds,
        "rounds_with_one_call": sum(rd["one_call_per_key"] for rd in rounds),
        "keys_asked": asked,
        "keys_with_one_call": sum(rd["keys_with_one_call"] for rd in rounds),
        "total_upstream_calls": sum(rd["upstream_calls"] for rd in rounds),
        "calls_per_key": calls_asked / asked if asked else float("nan"),
        "max_calls_per_key": max((rd["max_calls_per_key"] for rd in rounds), default=0),
        "all_values_equal": all(rd["equal_values"] for rd in rounds),
        "errors": sum(len(rd["errors"]) for rd in rounds),
        "overhead_p50_s": percentile(overheads, 50),
        "overhead_p99_s": percentile(overheads, 99),
        "overhead_max_s": max(overheads, default=float("nan")),
        "handoffs": len(handoffs),
        "handoff_p50_s": percentile(handoffs, 50),
        "handoff_p99_s": percentile(handoffs, 99),
        "handoff_max_s": max(handoffs, default=float("nan")),
        "handoff_target_p99_s": HANDOFF_TARGET_P99,
        "start_skew_max_s": max((rd["start_skew_s"] for rd in rounds), default=float("nan")),
        "requests": requests,
        "redis_commands": commands,
        "commands_per_request": commands / requests if requests else float("nan"),
        "commands_per_request_by_round": [rd["commands_per_request"] for rd in rounds],
        "command_mix_per_request": {
            cmd: n / requests for cmd, n in sorted(mix.items(), key=lambda item: -item[1])
        } if requests else {},
        "bench_commands": sum(rd["bench_commands"] for rd in rounds),
        "masters": masters,
        "links_per_process": {str(pid): n for pid, n in sorted(links.items())},
        "links_per_process_max": max(links.values(), default=0),
        "subscription_connections_per_process_max": max(connections.values(), default=0),
        "cache_stats": stats,
    }


def _print_wide(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json:
        print_json(report)
        return
    cfg = report["config"]
    masters = cfg["masters"]
    where = f"a Redis Cluster of {masters} masters" if cfg["cluster"] else "one Redis node"
    print(
        f"\nbench stampede on {where}: {args.processes} processes x {args.threads} threads, "
        f"{args.keys} key(s) per round, {args.asks} asked by each caller (random sample, "
        f"one after the other), upstream {args.upstream:g} s, lock {args.lock}, "
        f"lock_ttl {args.lock_ttl:g} s"
    )
    rows = [
        [
            rd["round"],
            rd["keys_asked"],
            rd["upstream_calls"],
            f"{rd['calls_per_key']:.2f} (max {rd['max_calls_per_key']})",
            ms(rd["handoff_p50_s"], 2),
            ms(rd["handoff_p99_s"], 2),
            f"{rd['commands_per_request']:.2f}",
            rd["links_per_process_max"],
            "yes" if rd["equal_values"] else "NO",
        ]
        for rd in report["rounds"]
    ]
    print(
        format_table(
            [
                "round",
                "keys asked",
                "upstream calls",
                "calls/key",
                "hand-off p50",
                "hand-off p99",
                "commands/request",
                "links/process",
                "equal values",
            ],
            rows,
        )
    )
    n = len(report["rounds"])
    target = report["handoff_target_p99_s"]
    verdict = "meets" if report["handoff_p99_s"] <= target else "misses"
    mix = ", ".join(f"{c} {x:.2f}" for c, x in list(report["command_mix_per_request"].items())[:8])
    stats = report["cache_stats"]
    print()
    print(
        format_table(
            ["overall", ""],
            [
                ["rounds with exactly 1 upstream call per key asked",
                 f"{report['rounds_with_one_call']}/{n}"],
                ["keys asked / with exactly 1 call",
                 f"{report['keys_asked']} / {report['keys_with_one_call']}"],
                ["upstream calls per key asked",
                 f"{report['calls_per_key']:.2f} (max {report['max_calls_per_key']})"],
                ["hand-off p50", ms(report["handoff_p50_s"], 2)],
                ["hand-off p99", f"{ms(report['handoff_p99_s'], 2)} ({verdict} the <= "
                                 f"{ms(target, 0)} goal)"],
                ["hand-off max", ms(report["handoff_max_s"], 2)],
                ["follower overhead p50 / p99",
                 f"{ms(report['overhead_p50_s'])} / {ms(report['overhead_p99_s'])}"],
                ["Redis commands per request", f"{report['commands_per_request']:.2f}"],
                ["  by round", ", ".join(f"{x:.2f}" for x in
                                         report["commands_per_request_by_round"])],
                ["  mix per request", mix or "-"],
                ["shard links per process (max)",
                 f"{report['links_per_process_max']} (<= {masters} master"
                 f"{'s' * (masters > 1)}: "
                 f"{'yes' if report['links_per_process_max'] <= masters else 'NO'})"],
                ["subscription connections per process (max)",
                 f"{report['subscription_connections_per_process_max']} "
                 "(shard links + the namespace channel)"],
                ["all callers got equal values", "yes" if report["all_values_equal"] else "NO"],
                ["errors", report["errors"]],
                ["start skew max", ms(report["start_skew_max_s"], 2)],
                ["served by another process / thread",
                 f"{stats.get('followed', 0)} / {stats.get('coalesced', 0)}"],
            ],
        )
    )
    print("hand-off = caller return - the leader's compute end, for asks made before the value "
          "existed")
    print("commands/request: INFO commandstats deltas of every master over the round, without "
          "INFO, PING,\n  CLUSTER, COMMAND, REPLCONF (replicas' acks) and the bench's own "
          f"HINCRBY per upstream call ({report['bench_commands']} in all), divided by the "
          "get_or_set calls;\n  commands run by scripts count besides the EVALSHA")
    for rd in report["rounds"]:
        for err in rd["errors"][:3]:
            print(f"round {rd['round']} error: {err}")
