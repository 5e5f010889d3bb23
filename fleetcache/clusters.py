"""The Redis Cluster side of the redis-py boundary (ARCHITECTURE §14).

What a cache needs beyond single commands when its client is a cluster client: the masters
to walk for a keyspace scan, one node's SCAN reply, disconnecting every node's pool, and a
subscriber that listens on one plain connection to one node.

Why not redis-py's cluster pub/sub: its asyncio ``ClusterPubSub`` needs the slot map
before the first SUBSCRIBE and closes the cluster client's node connections with its own,
and the sync one pins a connection to the channel's slot owner.  Classic pub/sub messages
reach every node of a cluster (the cluster bus broadcasts them), so the cache subscribes
on a plain connection to any live node, taking the next node in turn after a failure: a
failed or removed node costs one reconnect, like a restart of a single Redis.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

import redis
from redis import asyncio as aioredis

from fleetcache.backend import (
    CLUSTER_CLIENTS,
    AsyncClient,
    Client,
    cluster_settings,
    map_redis_errors,
)
from fleetcache.errors import BackendError


def is_cluster(client: Any) -> bool:
    """True for a Redis Cluster client (sync or asyncio)."""
    return isinstance(client, CLUSTER_CLIENTS)


def primaries(client: redis.Redis | redis.RedisCluster) -> list[Any]:
    """The masters of a cluster client (each a target for ``target_nodes=``), or ``[None]``
    for a single node: the targets a keyspace walk (SCAN) must visit."""
    if not isinstance(client, redis.RedisCluster):
        return [None]
    with map_redis_errors("cluster: nodes"):
        return list(client.get_primaries())


async def primaries_async(client: aioredis.Redis | aioredis.RedisCluster) -> list[Any]:
    """The asyncio twin of :func:`primaries` (maps the cluster first if it is new)."""
    if not isinstance(client, aioredis.RedisCluster):
        return [None]
    with map_redis_errors("cluster: nodes"):
        await client.initialize()
        return list(client.get_primaries())


def scan_reply(reply: Any) -> tuple[int, list[Any]]:
    """``(cursor, keys)`` of a SCAN reply, also of a cluster client's one-node SCAN (whose
    cursor is ``{node name: cursor}``)."""
    cursor, keys = reply
    if isinstance(cursor, dict):
        cursor = next(iter(cursor.values()), 0)
    return int(cursor), list(keys)


def disconnect(client: Client | ClusterSubscriber) -> None:
    """Close every connection ``client``'s pools hold (one node, or each node of a
    cluster); the client stays usable and reconnects on its next command."""
    if isinstance(client, ClusterSubscriber):
        client.disconnect()
        return
    if isinstance(client, redis.RedisCluster):
        for node in client.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
        return
    client.connection_pool.disconnect()


async def disconnect_async(client: AsyncClient | AsyncClusterSubscriber) -> None:
    """The asyncio twin of :func:`disconnect` (a cluster client maps itself again on its
    next command)."""
    if isinstance(client, AsyncClusterSubscriber):
        await client.disconnect()
        return
    if isinstance(client, aioredis.RedisCluster):
        for node_client in _NODE_CLIENTS.pop(client, {}).values():
            await node_client.connection_pool.disconnect()
        await client.aclose()
        return
    await client.connection_pool.disconnect()



def _nodes_of(client: Any) -> list[tuple[str, int]]:
    """Every node ``client`` knows now, masters first, and its seeds."""
    known = sorted(client.get_nodes(), key=lambda n: n.server_type != "primary")
    pairs = [(n.host, n.port) for n in known]
    pairs += [(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()]
    return list(dict.fromkeys(pairs))


def _settings(client: Any) -> dict[str, Any]:
    kept = cluster_settings(client, "socket_timeout", "socket_connect_timeout")
    kept.update(protocol=2, decode_responses=False)
    return kept


class ClusterSubscriber:
    """``pubsub()`` on one node of a cluster at a time, the next one after each call."""

    def __init__(self, cluster: redis.RedisCluster) -> None:
        self._cluster = cluster
        self._settings = _settings(cluster)
        self._turn = itertools.count()
        self._clients: dict[tuple[str, int], redis.Redis] = {}

    def _next_client(self) -> redis.Redis:
        nodes = _nodes_of(self._cluster)
        host, port = nodes[next(self._turn) % len(nodes)]
        found = self._clients.get((host, port))
        if found is None:
            found = self._clients[host, port] = redis.Redis(host, port, **self._settings)
        return found

    def pubsub(self) -> Any:
        """A PubSub on the next node (a session's subscription)."""
        return self._next_client().pubsub()

    def disconnect(self) -> None:
        """Close every connection the subscriber opened."""
        for client in self._clients.values():
            client.connection_pool.disconnect()


class AsyncClusterSubscriber:
    """The asyncio twin of :class:`ClusterSubscriber`."""

    def __init__(self, cluster: aioredis.RedisCluster) -> None:
        self._cluster = cluster
        self._settings = _settings(cluster)
        self._turn = itertools.count()
        self._clients: dict[tuple[str, int], aioredis.Redis] = {}

    def _next_client(self) -> aioredis.Redis:
        nodes = _nodes_of(self._cluster)
        host, port = nodes[next(self._turn) % len(nodes)]
        found = self._clients.get((host, port))
        if found is None:
            found = self._clients[host, port] = aioredis.Redis(
                host=host, port=port, **self._settings)
        return found

    def pubsub(self) -> Any:
        """A PubSub on the next node (a session's subscription)."""
        return self._next_client().pubsub()

    async def disconnect(self) -> None:
        """Close every connection the subscriber opened."""
        for client in self._clients.values():
            await client.connection_pool.disconnect()


def subscriber(client: Client) -> Client | ClusterSubscriber:
    """What the notifier subscribes through: the client itself, or a node subscriber."""
    return ClusterSubscriber(client) if isinstance(client, redis.RedisCluster) else client


def subscriber_async(client: AsyncClient) -> AsyncClient | AsyncClusterSubscriber:
    """The asyncio twin of :func:`subscriber`."""
    if isinstance(client, aioredis.RedisCluster):
        return AsyncClusterSubscriber(client)
    return client


_NODE_CLIENTS: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def node_client(client: Client, key: str) -> redis.Redis:
    """A plain client on the master serving ``key``'s slot (``client`` itself on one node):
    for what must run on one connection there, such as a write and its ``WAIT``."""
    if not isinstance(client, redis.RedisCluster):
        return client
    with map_redis_errors("cluster: slot owner"):
        return client.get_redis_connection(client.get_node_from_key(key))


async def node_client_async(client: AsyncClient, key: str) -> aioredis.Redis:
    """The asyncio twin of :func:`node_client` (one plain client per node, kept with the
    cluster client and closed by :func:`disconnect_async`)."""
    if not isinstance(client, aioredis.RedisCluster):
        return client
    with map_redis_errors("cluster: slot owner"):
        await client.initialize()
        node: Any = client.get_node_from_key(key)
    if node is None:
        raise BackendError(f"cluster: no master serves the slot of {key!r}")
    where: tuple[str, int] = (str(node.host), int(node.port))
    clients = _NODE_CLIENTS.setdefault(client, {})
    found = clients.get(where)
    if found is None:
        settings = _settings(client)
        found = clients[where] = aioredis.Redis(host=where[0], port=where[1], **settings)
    return found
