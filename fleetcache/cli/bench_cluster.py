"""The Redis Cluster parts of the benches: ``bench hit --cluster`` and a throwaway cluster.

``bench hit --cluster`` is ``bench hit`` with :class:`redis.RedisCluster` clients on both
sides: the cache's hits (``cache.get`` and ``cache.get_or_set``) against a raw
``RedisCluster.get`` + ``orjson.loads`` of the same value, with the same connection
settings (1 s timeouts, one immediate retry, RESP2).  Server commands per hit are the
``INFO commandstats`` deltas of every master, summed and per master: a hit is one ``GET``
on the master that owns the entry's slot.  Client round trips are ``send_packed_command``
calls of the benchmarking thread on any connection (the cache's cluster client is its own
copy, so a connection subclass cannot be slipped in: the method is wrapped for the run).

:func:`cluster_target` yields the URL given, or starts a throwaway local cluster (3 masters
+ 3 replicas, :func:`fleetcache.testing.cluster.redis_cluster`) and stops it on exit.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

from fleetcache.cli.bench_hit import (
    CountingConnection,
    bench_request,
    build_report,
    measure,
    not_called,
    print_report,
)
from fleetcache.cli.common import (
    cache_policy,
    command_counts,
    connect_cluster,
    drop_keys,
    fresh_namespace,
    log,
    master_clients,
)
from fleetcache.cli.fake_llm import sized_completion

_TIMEOUT = 1.0  # the cache's default Policy.redis_timeout: both clients use it
#: Commands that are not the clients' work: INFO and PING (our probes, keep-alives), the
#: cluster clients' topology queries, and the replicas' acknowledgements (REPLCONF ACK).
_NOT_WORK = ("info", "ping", "replconf")
_NOT_WORK_FAMILIES = ("cluster", "command")


def not_work(command: str) -> bool:
    """True for a commandstats entry that is no client's work (see :data:`_NOT_WORK`)."""
    return command in _NOT_WORK or command.partition("|")[0] in _NOT_WORK_FAMILIES


@contextlib.contextmanager
def cluster_target(url: str | None, *, quiet: bool = False) -> Iterator[str]:
    """Yield ``url``, or the URL of a throwaway local Redis Cluster (3 masters, 3
    replicas) started for the block and stopped, every node, when it exits."""
    if url:
        yield url
        return
    from fleetcache.testing.cluster import redis_cluster  # noqa: PLC0415

    if not quiet:
        log("starting a throwaway Redis Cluster (3 masters + 3 replicas)...")
    with redis_cluster(masters=3, replicas=1) as handle:
        if not quiet:
            log(f"started a throwaway Redis Cluster at {handle.url} "
                "(pass --redis URL to use your own)")
        yield handle.url


def open_cluster(url: str, **overrides: Any) -> redis.RedisCluster | None:
    """:func:`connect_cluster`, or None after logging why the URL names no cluster."""
    try:
        return connect_cluster(url, **overrides)
    except ValueError as exc:
        log(f"--cluster: {exc}")
    except (redis.RedisError, OSError) as exc:
        log(f"--cluster: cannot reach {url}: {type(exc).__name__}: {exc}")
    return None


@contextlib.contextmanager
def count_every_connection() -> Iterator[None]:
    """Count every connection's ``send_packed_command`` in :class:`CountingConnection`'s
    per-thread tally for the block (the cluster clients open their own connections)."""
    original: Callable[..., None] = AbstractConnection.send_packed_command

    def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        CountingConnection.count()
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def run_hit(args: argparse.Namespace) -> int:
    """``bench hit --cluster``: exit status 1 when a hit returned a wrong value, 2 when the
    URL names no cluster."""
    from fleetcache import Cache  # noqa: PLC0415
    from fleetcache.core.keys import request_hash  # noqa: PLC0415

    value = sized_completion(args.value_size)
    request = bench_request()
    settings: dict[str, Any] = {
        "socket_timeout": _TIMEOUT,
        "socket_connect_timeout": _TIMEOUT,
        "retry": Retry(NoBackoff(), 1),
        "protocol": 2,
    }
    with cluster_target(args.redis, quiet=args.json) as url:
        admin = open_cluster(url)
        if admin is None:
            return 2
        raw_client = connect_cluster(url, **settings)
        cache = Cache(connect_cluster(url, **settings), namespace=fresh_namespace("bench-hit"),
                      policy=cache_policy(args.freshness))
        raw_key = f"fcbench:{cache.namespace}:raw"
        try:
            cache.set(request, value)
            raw_client.set(raw_key, orjson.dumps(value), ex=3600)
            masters = [name for name, _ in master_clients(admin)]
            entry_master = str(admin.get_node_from_key("{" + request_hash(request) + "}").name)
            raw_master = str(admin.get_node_from_key(raw_key).name)
            series: dict[str, Callable[[], Any]] = {
                "fleetcache get": lambda: cache.get(request),
                "fleetcache get_or_set": lambda: cache.get_or_set(request, not_called),
                "raw GET + orjson.loads": lambda: orjson.loads(raw_client.get(raw_key) or b""),
            }
            with count_every_connection():
                measured = measure(args, series, value, lambda: command_counts(admin), not_work)
        finally:
            cache.close()
            drop_keys(admin, f"fc:{cache.namespace}:*", f"fcbench:{cache.namespace}:*")
            for c in (raw_client, admin):
                c.close()
    report = build_report(args, value, measured)
    report["config"]["masters"] = len(masters)
    total_ops = args.rounds * args.ops
    report["cluster"] = {
        "namespace": cache.namespace,
        "masters": masters,
        "entry_master": entry_master,
        "raw_master": raw_master,
        "server_commands_per_hit_by_master": {
            name: {
                node: {
                    cmd: calls / total_ops
                    for (where, cmd), calls in sorted(measured.server[name].items())
                    if where == node
                }
                for node in masters
                if any(where == node for where, _ in measured.server[name])
            }
            for name in measured.names
        },
    }
    print_report(args, report, measured.names)
    return 1 if measured.wrong else 0
