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
from dataclasses import dataclass, field
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
        CountingConnection.count()
        redis.Connection.send_packed_command(self, command, check_health)

    @classmethod
    def count(cls) -> None:
        """One more exchange by the current thread."""
        ident = threading.get_ident()
        with cls._guard:
            cls.exchanges[ident] = cls.exchanges.get(ident, 0) + 1

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
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="Redis Cluster: the cache and the raw GET on RedisCluster clients, server "
        "commands summed over every master (default: start a throwaway 3-master cluster)",
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


#: INFO commandstats calls: (node name, command) -> calls; the node is "" on a single node.
Snapshot = Callable[[], dict[tuple[str, str], int]]


def bench_request() -> dict[str, Any]:
    """The request whose (cached) value every hit reads."""
    return {
        "model": "gpt-4.1-mini",
        "temperature": 0,
        "messages": [{"role": "user", "content": "bench hit: say something long"}],
    }


def not_called() -> Any:
    """The ``compute`` of the get_or_set series: a hit never calls it."""
    raise AssertionError("bench hit: compute ran, the entry was not a hit")


@dataclass
class Measured:
    """What the rounds of :func:`measure` collected."""

    names: list[str]
    per_op: dict[str, list[float]]
    exchanges: dict[str, int]
    #: series -> (node, command) -> calls over every round
    server: dict[str, dict[tuple[str, str], int]]
    wrong: int = 0
    rounds: list[dict[str, Any]] = field(default_factory=list)


def measure(
    args: argparse.Namespace,
    series: dict[str, Callable[[], Any]],
    value: Any,
    snapshot: Snapshot,
    excluded: Callable[[str], bool],
) -> Measured:
    """Warm every series up, then run ``args.rounds`` rounds of ``args.ops`` calls of each,
    the order rotating, with client exchanges and server commands counted per series."""
    for fn in series.values():
        _timed(fn, _WARMUP)
    names = list(series)
    m = Measured(
        names,
        {n: [] for n in names},
        dict.fromkeys(names, 0),
        {n: {} for n in names},
    )
    for i in range(args.rounds):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            before_server, before = snapshot(), CountingConnection.mine()
            elapsed, last = _timed(series[name], args.ops)
            m.exchanges[name] += CountingConnection.mine() - before
            for where, calls in snapshot().items():
                delta = calls - before_server.get(where, 0)
                if delta and not excluded(where[1]):
                    m.server[name][where] = m.server[name].get(where, 0) + delta
            m.per_op[name].append(elapsed / args.ops)
            m.wrong += last != value
        m.rounds.append(
            {"round": i + 1, "first": order[0], **{n: 1.0 / m.per_op[n][-1] for n in names}}
        )
    return m


def build_report(args: argparse.Namespace, value: Any, m: Measured) -> dict[str, Any]:
    """The JSON report of a run (server commands summed over every node)."""
    names = m.names
    total_ops = args.rounds * args.ops
    medians = {n: statistics.median(m.per_op[n]) for n in names}
    raw_name = names[-1]
    summed: dict[str, dict[str, int]] = {n: {} for n in names}
    for n in names:
        for (_, cmd), calls in m.server[n].items():
            summed[n][cmd] = summed[n].get(cmd, 0) + calls
    return {
        "config": {
            "rounds": args.rounds,
            "ops": args.ops,
            "value_size": args.value_size,
            "value_json_bytes": len(orjson.dumps(value)),
            "freshness": args.freshness,
        },
        "rounds": m.rounds,
        "median_op_s": medians,
        "ratio_get_vs_raw": medians[names[0]] / medians[raw_name],
        "ratio_get_or_set_vs_raw": medians[names[1]] / medians[raw_name],
        "round_trips_per_hit": {n: m.exchanges[n] / total_ops for n in names},
        "server_commands_per_hit": {
            n: {cmd: calls / total_ops for cmd, calls in sorted(summed[n].items())} for n in names
        },
        "wrong_values": m.wrong,
        "target_ratio": TARGET_RATIO,
    }


def run(args: argparse.Namespace) -> int:
    """Run the bench; exit status 1 when a hit returned anything but the cached value."""
    if args.ops is None:
        args.ops = 6400 if args.async_ else 2000
    if min(args.rounds, args.ops, args.concurrency) < 1 or args.value_size < 0:
        log("--rounds, --ops and --concurrency must be >= 1, --value-size >= 0")
        return 2
    if args.async_ and args.cluster:
        log("bench hit: --async --cluster is not supported yet; run --cluster (threads) or "
            "--async on a single node")
        return 2
    if args.async_:
        from fleetcache.cli.async_bench_hit import run_async  # noqa: PLC0415

        return run_async(args)
    if args.cluster:
        from fleetcache.cli.bench_cluster import run_hit  # noqa: PLC0415

        return run_hit(args)
    from fleetcache import Cache  # noqa: PLC0415

    value = sized_completion(args.value_size)
    request = bench_request()
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
            series: dict[str, Callable[[], Any]] = {
                "fleetcache get": lambda: cache.get(request),
                "fleetcache get_or_set": lambda: cache.get_or_set(request, not_called),
                "raw GET + orjson.loads": lambda: orjson.loads(raw_client.get(raw_key) or b""),
            }

            def snapshot() -> dict[tuple[str, str], int]:
                return {("", cmd): calls for cmd, calls in _server_commands(admin).items()}

            measured = measure(args, series, value, snapshot, _SERVER_EXCLUDED.__contains__)
        finally:
            cache.close()
            drop_keys(admin, f"fc:{cache.namespace}:*", f"fcbench:{cache.namespace}:*")
            for c in (raw_client, admin):
                c.close()
    report = build_report(args, value, measured)
    print_report(args, report, measured.names)
    return 1 if measured.wrong else 0


def print_report(args: argparse.Namespace, report: dict[str, Any], names: list[str]) -> None:
    """Print ``report`` (a table, or JSON with --json)."""
    if args.json:
        print_json(report)
        return
    cfg = report["config"]
    where = f" on a Redis Cluster of {cfg['masters']} masters" if "masters" in cfg else ""
    print(
        f"\nbench hit{where}: {args.rounds} rounds x {args.ops} ops, value "
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
    cluster: dict[str, Any] | None = report.get("cluster")
    if cluster is None:
        print(
            "round trips: send_packed_command calls by the benchmarking thread (connection "
            "subclass);\nserver commands: INFO commandstats delta, without INFO and PING "
            "(other clients of this Redis would inflate it)"
        )
    else:
        _print_cluster(cluster, names)
    if report["wrong_values"]:
        print(f"WRONG VALUES: {report['wrong_values']} series ended with a wrong value")


def _print_cluster(cluster: dict[str, Any], names: list[str]) -> None:
    """The per-master part of a ``--cluster`` report."""
    by_master: dict[str, dict[str, dict[str, float]]] = cluster["server_commands_per_hit_by_master"]
    print()
    rows = []
    for n in names:
        for node in cluster["masters"]:
            cmds = by_master[n].get(node, {})
            owner = (node == cluster["entry_master"]) if n != names[-1] else (
                node == cluster["raw_master"])
            rows.append([n, node + (" (owner)" if owner else ""),
                         ", ".join(f"{c} {x:.2f}" for c, x in cmds.items()) or "-"])
    print(format_table(["", "master", "server commands/hit"], rows))
    print(
        "round trips: send_packed_command calls by the benchmarking thread (every connection "
        "counted);\nserver commands: INFO commandstats delta of every master, without INFO, "
        "PING, CLUSTER, COMMAND and REPLCONF\n(replicas' acks); other clients of the cluster "
        "would inflate it"
    )
