"""``bench hit``: the cost of a cache hit against a raw ``GET`` + ``orjson.loads``.

One value (a realistic chat completion of about ``--value-size`` bytes of JSON) is cached
under one request.  Each round times N ``cache.get(request)``, N ``cache.get_or_set(request,
...)`` (a hit, so ``compute`` never runs) and N raw ``r.get(key)`` + ``orjson.loads`` of the
same value on a plain client with the same connection settings; the order rotates from one
round to the next.  Reported: the median over rounds of the per-op time of each, the ratio
of medians, and round trips per hit, measured two ways:

* client: ``send_packed_command`` calls made by the benchmarking thread, counted by a
  connection subclass (one per request/response exchange; a pipeline counts once);
* server: the delta of ``INFO commandstats`` over the fleetcache series, without INFO
  itself and PING (the cache's pub/sub keep-alive runs on another connection).

``--async``: throughput of :class:`fleetcache.AsyncCache` hits at a concurrency of 64
tasks vs raw ``redis.asyncio`` GETs (see :mod:`fleetcache.cli.async_bench_hit`).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fleetcache.cli.common import (
    cache_policy,
    drop_keys,
    format_table,
    fresh_namespace,
    log,
    print_json,
    redis_target,
    us,
)
from fleetcache.cli.fake_llm import sized_completion

HELP = "cost of a cache hit vs a raw GET + orjson.loads, and round trips per hit"
TARGET_RATIO = 1.25
_TIMEOUT = 1.0  # the cache's default Policy.redis_timeout: both clients use it
_WARMUP = 200
_SERVER_EXCLUDED = ("info", "ping")


class CountingConnection(redis.Connection):
    """A connection that counts request/response exchanges per calling thread."""

    exchanges: ClassVar[dict[int, int]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def send_packed_command(self, command: str | Iterable[str], check_health: bool = True) -> None:
        """Count, then send."""
        ident = threading.get_ident()
        with CountingConnection._guard:
            CountingConnection.exchanges[ident] = CountingConnection.exchanges.get(ident, 0) + 1
        redis.Connection.send_packed_command(self, command, check_health)

    @classmethod
    def mine(cls) -> int:
        """Exchanges made so far by the current thread."""
        with cls._guard:
            return cls.exchanges.get(threading.get_ident(), 0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench hit``."""
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: start a local one)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds (15)")
    parser.add_argument(
        "--ops", type=int, help="operations per series per round (2000; --async: 6400)"
    )
    parser.add_argument(
        "--value-size",
        type=int,
        default=2000,
        help="approximate JSON size of the cached value in bytes (2000)",
    )
    parser.add_argument(
        "--async",
        dest="async_",
        action="store_true",
        help="asyncio: AsyncCache hits by --concurrency tasks vs raw redis.asyncio GETs",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="asyncio tasks with --async (64)"
    )
    parser.add_argument(
        "--freshness",
        action="store_true",
        help="every freshness feature on: stale_ttl 600, early_refresh 1.0, hot_threshold 10",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def _server_commands(r: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def _timed(fn: Callable[[], Any], ops: int) -> tuple[float, Any]:
    """Seconds for ``ops`` calls of ``fn``, and the last result."""
    result: Any = None
    start = time.perf_counter()
    for _ in range(ops):
        result = fn()
    return time.perf_counter() - start, result


def run(args: argparse.Namespace) -> int:
    """Run the bench; exit status 1 when a hit returned anything but the cached value."""
    if args.ops is None:
        args.ops = 6400 if args.async_ else 2000
    if min(args.rounds, args.ops, args.concurrency) < 1 or args.value_size < 0:
        log("--rounds, --ops and --concurrency must be >= 1, --value-size >= 0")
        return 2
    if args.async_:
        from fleetcache.cli.async_bench_hit import run_async  # noqa: PLC0415

        return run_async(args)
    from fleetcache import Cache  # noqa: PLC0415

    value = sized_completion(args.value_size)
    request = {
        "model": "gpt-4.1-mini",
        "temperature": 0,
        "messages": [{"role": "user", "content": "bench hit: say something long"}],
    }
    settings: dict[str, Any] = {
        "connection_class": CountingConnection,
        "socket_timeout": _TIMEOUT,
        "socket_connect_timeout": _TIMEOUT,
        "retry": Retry(NoBackoff(), 1),
    }
    with redis_target(args.redis, quiet=args.json) as url:
        raw_client: redis.Redis = redis.Redis.from_url(url, **settings)
        admin: redis.Redis = redis.Redis.from_url(url, socket_timeout=5.0)
        cache = Cache(redis.Redis.from_url(url, **settings), namespace=fresh_namespace("bench-hit"),
                      policy=cache_policy(args.freshness))
        raw_key = f"fcbench:{cache.namespace}:raw"
        try:
            cache.set(request, value)
            raw_client.set(raw_key, orjson.dumps(value), ex=3600)

            def compute() -> Any:
                raise AssertionError("bench hit: compute ran, the entry was not a hit")

            series: dict[str, Callable[[], Any]] = {
                "fleetcache get": lambda: cache.get(request),
                "fleetcache get_or_set": lambda: cache.get_or_set(request, compute),
                "raw GET + orjson.loads": lambda: orjson.loads(raw_client.get(raw_key) or b""),
            }
            for fn in series.values():
                _timed(fn, _WARMUP)
            names = list(series)
            per_op: dict[str, list[float]] = {n: [] for n in names}
            exchanges: dict[str, int] = dict.fromkeys(names, 0)
            server: dict[str, dict[str, int]] = {n: {} for n in names}
            wrong = 0
            rounds: list[dict[str, Any]] = []
            for i in range(args.rounds):
                order = names[i % len(names) :] + names[: i % len(names)]
                for name in order:
                    before_server, before = _server_commands(admin), CountingConnection.mine()
                    elapsed, last = _timed(series[name], args.ops)
                    exchanges[name] += CountingConnection.mine() - before
                    after_server = _server_commands(admin)
                    for cmd, calls in after_server.items():
                        delta = calls - before_server.get(cmd, 0)
                        if delta and cmd not in _SERVER_EXCLUDED:
                            server[name][cmd] = server[name].get(cmd, 0) + delta
                    per_op[name].append(elapsed / args.ops)
                    wrong += last != value
                rounds.append(
                    {"round": i + 1, "first": order[0], **{n: 1.0 / per_op[n][-1] for n in names}}
                )
        finally:
            cache.close()
            drop_keys(admin, f"fc:{cache.namespace}:*", f"fcbench:{cache.namespace}:*")
            for c in (raw_client, admin):
                c.close()
    total_ops = args.rounds * args.ops
    medians = {n: statistics.median(per_op[n]) for n in names}
    raw_name = names[-1]
    report: dict[str, Any] = {
        "config": {
            "rounds": args.rounds,
            "ops": args.ops,
            "value_size": args.value_size,
            "value_json_bytes": len(orjson.dumps(value)),
            "freshness": args.freshness,
        },
        "rounds": rounds,
        "median_op_s": medians,
        "ratio_get_vs_raw": medians[names[0]] / medians[raw_name],
        "ratio_get_or_set_vs_raw": medians[names[1]] / medians[raw_name],
        "round_trips_per_hit": {n: exchanges[n] / total_ops for n in names},
        "server_commands_per_hit": {
            n: {cmd: calls / total_ops for cmd, calls in sorted(server[n].items())} for n in names
        },
        "wrong_values": wrong,
        "target_ratio": TARGET_RATIO,
    }
    _print(args, report, names)
    return 1 if wrong else 0


def _print(args: argparse.Namespace, report: dict[str, Any], names: list[str]) -> None:
    if args.json:
        print_json(report)
        return
    cfg = report["config"]
    print(
        f"\nbench hit: {args.rounds} rounds x {args.ops} ops, value "
        f"{cfg['value_json_bytes']} bytes of JSON, order rotating each round"
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
                us(report["median_op_s"][n]),
                f"{1.0 / report['median_op_s'][n]:,.0f}",
                f"{report['round_trips_per_hit'][n]:.2f}",
                ", ".join(f"{c} {x:.2f}" for c, x in cmds.items()) or "-",
            ]
        )
    print(
        format_table(["", "median per op", "ops/s", "round trips/hit", "server commands/hit"], rows)
    )
    print()
    for label, key in (("get", "ratio_get_vs_raw"), ("get_or_set", "ratio_get_or_set_vs_raw")):
        ratio = report[key]
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        print(
            f"fleetcache {label} / raw (ratio of medians): {ratio:.2f}x "
            f"({verdict} the <= {TARGET_RATIO}x target)"
        )
    print(
        "round trips: send_packed_command calls by the benchmarking thread (connection "
        "subclass);\nserver commands: INFO commandstats delta, without INFO and PING "
        "(other clients of this Redis would inflate it)"
    )
    if report["wrong_values"]:
        print(f"WRONG VALUES: {report['wrong_values']} series ended with a wrong value")
