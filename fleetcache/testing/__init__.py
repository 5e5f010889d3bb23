"""Real Redis nodes and network faults for tests: fleetcache's own, and its users'.

```python
from fleetcache.testing import FaultProxy, redis_cluster, redis_nodes

with redis_nodes(3) as nodes:              # 3 standalone nodes on free 127.0.0.1 ports
    r = nodes[0].client()                  # socket timeouts 2 s, no retries
    nodes[1].pause()                       # SIGSTOP / docker pause: a hung node
    nodes[2].kill()                        # SIGKILL / docker kill: a crash
    with FaultProxy(nodes[0].host, nodes[0].port) as proxy:
        proxy.blackhole()                  # or cut(), delay(0.2), reset(), heal()

with redis_cluster(masters=3, replicas=1) as cluster:  # a real Redis Cluster (cluster.py)
    rc = cluster.client()                  # redis.cluster.RedisCluster
    cluster.master_of("k").kill()          # then cluster.failover_wait(...), cluster.heal()
```

The provider comes from `FLEETCACHE_REDIS` (`containers`, `local` or `auto`, the default):
`auto` uses containers when a Docker engine answers a ping within ~2 s, local
`redis-server` processes otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from fleetcache.testing.nodes import (
    LOOPBACK,
    NodeError,
    NodeProvider,
    RedisNode,
    free_port,
    port_is_open,
    wait_port_closed,
    wait_port_open,
)
from fleetcache.testing.proxy import FaultProxy

if TYPE_CHECKING:
    from fleetcache.testing.cluster import RedisClusterHandle, redis_cluster, start_cluster

__all__ = [
    "KINDS",
    "LOOPBACK",
    "FaultProxy",
    "NodeError",
    "NodeProvider",
    "RedisClusterHandle",
    "RedisNode",
    "free_port",
    "get_provider",
    "port_is_open",
    "redis_cluster",
    "redis_nodes",
    "resolve_kind",
    "start_cluster",
    "wait_port_closed",
    "wait_port_open",
]

KINDS = ("containers", "local", "auto")
# Imported on first use, so that `python -m fleetcache.testing.cluster` runs it only once.
_CLUSTER_NAMES = frozenset({"RedisClusterHandle", "redis_cluster", "start_cluster"})


def __getattr__(name: str) -> Any:
    if name in _CLUSTER_NAMES:
        from fleetcache.testing import cluster  # noqa: PLC0415

        return getattr(cluster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_kind(kind: str | None = None) -> str:
    """`containers` or `local`: from `kind`, else `FLEETCACHE_REDIS`, `auto` resolved."""
    chosen = (kind or os.environ.get("FLEETCACHE_REDIS") or "auto").strip().lower()
    if chosen not in KINDS:
        raise ValueError(f"unknown Redis provider {chosen!r}: expected one of {KINDS}")
    if chosen == "auto":
        from fleetcache.testing.containers import docker_available  # noqa: PLC0415

        return "containers" if docker_available(timeout=2.0) else "local"
    return chosen


def get_provider(kind: str | None = None) -> NodeProvider:
    """A new provider of the given kind (see `resolve_kind`); close it when done."""
    if resolve_kind(kind) == "containers":
        from fleetcache.testing.containers import ContainerProvider  # noqa: PLC0415

        return ContainerProvider()
    from fleetcache.testing.local import LocalProvider  # noqa: PLC0415

    return LocalProvider()


@contextlib.contextmanager
def redis_nodes(
    n: int = 1, extra_args: Sequence[str] = (), kind: str | None = None
) -> Iterator[list[RedisNode]]:
    """Start `n` nodes on a fresh provider; stop them all on exit, even on an exception."""
    provider = get_provider(kind)
    try:
        yield provider.start(n, extra_args)
    finally:
        provider.close()
