"""``bench hit --async``: throughput of AsyncCache hits at a concurrency vs raw asyncio GETs.

One value is cached under one request.  Each round runs, for every series, ``--ops`` hits
spread over ``--concurrency`` tasks (default 64) on one event loop and measures the
throughput (ops/s): ``await acache.get(request)``, ``await acache.get_or_set(request, ...)``
(a hit, so ``compute`` never runs) and, as the baseline, ``await r.get(key)`` +
``orjson.loads`` on a plain ``redis.asyncio.Redis`` with the same connection settings (the
same number of pooled connections, one per task).  The order rotates from one round to the
next.  Reported: the median throughput over rounds of each series, the ratio of medians
(fleetcache / raw; target >= 0.85) and, from ``INFO commandstats``, server commands per hit.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis

from fleetcache.cli.common import (
    Progress,
    cache_policy,
    drop_keys,
    format_table,
    fresh_namespace,
    log,
    print_json,
    redis_target,
)
from fleetcache.cli.fake_llm import sized_completion
from fleetcache.cli.locks import async_client

TARGET_RATIO = 0.85
_TIMEOUT = 1.0  # the cache's default Policy.redis_timeout: both clients use it
_SERVER_EXCLUDED = ("info", "ping")

Fetch = Callable[[], Awaitable[Any]]


def _server_commands(r: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def _throughput(fetch: Fetch, ops: int, concurrency: int, value: Any) -> tuple[float, int]:
    """(ops/s, wrong results) of ``ops`` calls of ``fetch`` spread over ``concurrency`` tasks.

    A call that raises counts as a wrong result (the first error is logged).
    """
    shares = [ops // concurrency + (i < ops % concurrency) for i in range(concurrency)]
    errors: list[str] = []

    async def task(n: int) -> int:
        wrong = 0
        for _ in range(n):
            try:
                wrong += (await fetch()) != value
            except Exception as exc:
                wrong += 1
                errors.append(f"{type(exc).__name__}: {exc}")
        return wrong

    start = time.perf_counter()
    wrong = await asyncio.gather(*(task(n) for n in shares if n))
    elapsed = time.perf_counter() - start
    if errors:
        log(f"{len(errors)} call(s) failed, first: {errors[0]}")
    return ops / elapsed, sum(wrong)


async def _bench(args: argparse.Namespace, url: str, progress: Progress) -> dict[str, Any]:
    from fleetcache import AsyncCache  # noqa: PLC0415

    value = sized_completion(args.value_size)
    request = {
        "model": "gpt-4.1-mini",
        "temperature": 0,
        "messages": [{"role": "user", "content": "bench hit --async: say something long"}],
    }
    # One connection per task, plus the cache's subscription: redis-py's pools allow 100
    # by default and raise MaxConnectionsError past that (the cache would then fail open).
    settings: dict[str, Any] = {
        "socket_timeout": _TIMEOUT,
        "socket_connect_timeout": _TIMEOUT,
        "max_connections": max(100, args.concurrency + 8),
    }
    raw = async_client(url, **settings)
    admin = redis.Redis.from_url(url, socket_timeout=5.0)
    cache = AsyncCache(async_client(url, **settings), namespace=fresh_namespace("bench-hit-async"),
                       policy=cache_policy(args.freshness))
    raw_key = f"fcbench:{cache.namespace}:raw"
    try:
        await cache.set(request, value)
        await raw.set(raw_key, orjson.dumps(value), ex=3600)

        async def compute() -> Any:
            raise AssertionError("bench hit --async: compute ran, the entry was not a hit")

        async def raw_get() -> Any:
            return orjson.loads(await raw.get(raw_key) or b"")

        series: dict[str, Fetch] = {
            "fleetcache get": lambda: cache.get(request),
            "fleetcache get_or_set": lambda: cache.get_or_set(request, compute),
            "raw GET + orjson.loads": raw_get,
        }
        names = list(series)
        for fetch in series.values():  # warm-up: opens one pooled connection per task
            await _throughput(fetch, max(args.ops // 4, args.concurrency), args.concurrency, value)
        per_round: dict[str, list[float]] = {n: [] for n in names}
        server: dict[str, dict[str, int]] = {n: {} for n in names}
        wrong = 0
        rounds: list[dict[str, Any]] = []
        for i in range(args.rounds):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                before = _server_commands(admin)
                ops_s, bad = await _throughput(series[name], args.ops, args.concurrency, value)
                for cmd, calls in _server_commands(admin).items():
                    delta = calls - before.get(cmd, 0)
                    if delta and cmd not in _SERVER_EXCLUDED:
                        server[name][cmd] = server[name].get(cmd, 0) + delta
                per_round[name].append(ops_s)
                wrong += bad
            rounds.append(
                {"round": i + 1, "first": order[0], **{n: per_round[n][-1] for n in names}}
            )
            progress.update(f"round {i + 1}/{args.rounds}")
        progress.done(f"{args.rounds} rounds done")
    finally:
        await cache.close()
        drop_keys(admin, f"fc:{cache.namespace}:*", f"fcbench:{cache.namespace}:*")
        admin.close()
        await raw.aclose()
    total = args.rounds * args.ops
    medians = {n: statistics.median(per_round[n]) for n in names}
    return {
        "config": {
            "async": True,
            "rounds": args.rounds,
            "ops": args.ops,
            "concurrency": args.concurrency,
            "value_size": args.value_size,
            "value_json_bytes": len(orjson.dumps(value)),
            "freshness": args.freshness,
        },
        "rounds": rounds,
        "median_ops_per_s": medians,
        "ratio_get_vs_raw": medians[names[0]] / medians[names[2]],
        "ratio_get_or_set_vs_raw": medians[names[1]] / medians[names[2]],
        "server_commands_per_hit": {
            n: {cmd: calls / total for cmd, calls in sorted(server[n].items())} for n in names
        },
        "wrong_values": wrong,
        "target_ratio": TARGET_RATIO,
    }


def run_async(args: argparse.Namespace) -> int:
    """Run the asyncio hit bench; exit status 1 when a hit returned a wrong value."""
    with redis_target(args.redis, quiet=args.json) as url:
        report = asyncio.run(_bench(args, url, Progress(enabled=not args.json)))
    _print(args, report)
    return 1 if report["wrong_values"] else 0


def _print(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json:
        print_json(report)
        return
    cfg = report["config"]
    names = list(report["median_ops_per_s"])
    print(
        f"\nbench hit --async: {args.rounds} rounds x {args.ops} hits over "
        f"{args.concurrency} tasks, value {cfg['value_json_bytes']} bytes of JSON, "
        "order rotating each round"
    )
    print(
        format_table(
            ["round", "first", *(f"{n} ops/s" for n in names)],
            [
                [rd["round"], rd["first"], *(f"{rd[n]:,.0f}" for n in names)]
                for rd in report["rounds"]
            ],
        )
    )
    print()
    rows = []
    for n in names:
        cmds = report["server_commands_per_hit"][n]
        rows.append(
            [
                n,
                f"{report['median_ops_per_s'][n]:,.0f}",
                ", ".join(f"{c} {x:.2f}" for c, x in cmds.items()) or "-",
            ]
        )
    print(format_table(["", "median ops/s", "server commands/hit"], rows))
    print()
    for label, key in (("get", "ratio_get_vs_raw"), ("get_or_set", "ratio_get_or_set_vs_raw")):
        ratio = report[key]
        verdict = "meets" if ratio >= TARGET_RATIO else "misses"
        print(
            f"fleetcache {label} / raw throughput (ratio of medians): {ratio:.2f}x "
            f"({verdict} the >= {TARGET_RATIO}x target)"
        )
    print("server commands: INFO commandstats delta, without INFO and PING")
    if report["wrong_values"]:
        print(f"WRONG VALUES: {report['wrong_values']} hits returned a wrong value")
