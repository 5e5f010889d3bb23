"""Run one Lua script on several independent Redis nodes at once: Redlock's round trip.

A hand-written pair (DESIGN §5): :func:`fan_out` for threads, :func:`fan_out_async` for
asyncio.  Both return, per node, the script's reply or the exception that node raised, and
bound each node by its client's own socket timeout.

The sync fan-out uses no thread pool: it writes the command on every node's connection
first, then waits on all the sockets at once (``poll``) and reads each reply as it
arrives, so one round costs the slowest node's latency, not the sum.  Connections come from
per-node pools that :func:`redlock_client` opens with the node client's settings minus
retries and minus every connect-time handshake (``CLIENT SETINFO``, and ``HELLO 3`` with the
maintenance-notifications handshake: the pools speak RESP2, which redis-py >= 8 no longer
defaults to), so that connecting to a hung node costs nothing until its reply is awaited,
in parallel with the others.  (With AUTH or a non-zero db a connect handshake remains; a
hung node then costs its timeout once per reconnection, and the replies of the other nodes
that arrived meanwhile are still read, not counted as timeouts.)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis import asyncio as aioredis
from redis.exceptions import NoScriptError

from fleetcache.backend import (
    REDIS_ERRORS,
    lua_source,
    unretried_async_client,
    unretried_client,
)


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A Lua script's source and SHA-1 (for EVALSHA with an EVAL fallback)."""

    source: str
    sha: str

    @classmethod
    def load(cls, package: str, name: str) -> LuaScript:
        """The shipped script ``lua/<name>.lua`` of ``package``."""
        src = lua_source(package, name)
        return cls(src, hashlib.sha1(src.encode()).hexdigest())


def node_timeout(client: redis.Redis | aioredis.Redis) -> float:
    """A node client's socket timeout: Redlock's per-node timeout (must be set)."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if timeout is None or timeout <= 0:
        raise ValueError(
            "every Redlock client needs a positive socket_timeout: it is the per-node timeout"
        )
    return float(timeout)


def redlock_client(client: redis.Redis) -> redis.Redis:
    """A client on its own pool with ``client``'s settings, no retries, no handshake."""
    if not isinstance(client, redis.Redis):
        raise TypeError(f"Redlock needs redis.Redis clients, not {type(client).__name__}")
    node_timeout(client)
    return unretried_client(client)


def redlock_async_client(client: aioredis.Redis) -> aioredis.Redis:
    """The asyncio twin of :func:`redlock_client`."""
    if not isinstance(client, aioredis.Redis):
        raise TypeError(
            f"Redlock needs redis.asyncio.Redis clients, not {type(client).__name__}"
        )
    node_timeout(client)
    return unretried_async_client(client)


def _read(conn: Any, script: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    try:
        return conn.read_response()
    except NoScriptError:
        conn.send_command("EVAL", script.source, len(keys), *keys, *args)
        return conn.read_response()


class _ThreadConnections(threading.local):
    """Each thread's own connection to each node pool, kept across rounds.

    Taking a connection from a pool and giving it back costs more CPU than the round trip
    itself (locks, a queue, redis-py's bookkeeping), so each thread keeps one per node.  A
    connection that failed is disconnected and reconnects lazily on the next command; one
    inherited across ``fork`` is never reused.
    """

    def __init__(self) -> None:
        self.by_pool: weakref.WeakKeyDictionary[Any, tuple[int, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, pool: Any) -> Any:
        """This thread's connection to ``pool``, made on first use."""
        held = self.by_pool.get(pool)
        if held is not None and held[0] == os.getpid():
            return held[1]
        conn = pool.get_connection()  # kept: never released to the pool
        self.by_pool[pool] = (os.getpid(), conn)
        return conn


_CONNECTIONS = _ThreadConnections()


def fan_out(
    clients: Sequence[redis.Redis], script: LuaScript, keys: Sequence[Any], args: Sequence[Any]
) -> list[Any]:
    """Run ``script`` on every node in one parallel round; a reply or an exception each.

    The command is encoded once (the node clients are assumed to share an encoding) and
    written to every node's connection; then ``poll`` waits on all the sockets at once and
    each reply is read as it arrives, each node bounded by its own deadline.
    """
    results: list[Any] = [None] * len(clients)
    pending: dict[int, tuple[int, Any, float]] = {}  # fd -> (node, conn, deadline)
    poller = select.poll()
    packed: Any = None
    try:
        for i, client in enumerate(clients):
            conn: Any = None
            try:
                deadline = time.monotonic() + node_timeout(client)
                conn = _CONNECTIONS.get(client.connection_pool)
                if packed is None:
                    packed = conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args)
                conn.send_packed_command(packed)
                fd = conn._sock.fileno()
                pending[fd] = (i, conn, deadline)
                poller.register(fd, select.POLLIN)
            except REDIS_ERRORS as exc:
                results[i] = exc
                if conn is not None:
                    conn.disconnect()
        while pending:
            # Read what has arrived first, then expire the rest: a reply that arrived while
            # a connect to another node blocked (AUTH, SELECT) is not a timeout.
            wait = min(d for _, _, d in pending.values()) - time.monotonic()
            for fd, _ in poller.poll(max(0.0, wait) * 1000):
                i, conn, _ = pending.pop(fd)
                poller.unregister(fd)
                try:
                    results[i] = _read(conn, script, keys, args)
                except REDIS_ERRORS as exc:
                    results[i] = exc
                    conn.disconnect()
            now = time.monotonic()
            for fd in [fd for fd, (_, _, d) in pending.items() if d <= now]:
                i, conn, _ = pending.pop(fd)
                poller.unregister(fd)
                results[i] = redis.exceptions.TimeoutError("node did not answer in time")
                conn.disconnect()
    finally:
        for _, conn, _ in pending.values():  # only on an unexpected error
            conn.disconnect()
    return results


async def _one_async(
    client: aioredis.Redis, script: LuaScript, keys: Sequence[Any], args: Sequence[Any]
) -> Any:
    try:
        async with asyncio.timeout(node_timeout(client)):
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(script.source, len(keys), *keys, *args)
    except TimeoutError:
        return redis.exceptions.TimeoutError("node did not answer in time")
    except REDIS_ERRORS as exc:
        return exc


async def fan_out_async(
    clients: Sequence[aioredis.Redis],
    script: LuaScript,
    keys: Sequence[Any],
    args: Sequence[Any],
) -> list[Any]:
    """The asyncio twin of :func:`fan_out` (``asyncio.gather`` over the nodes)."""
    return list(await asyncio.gather(*(_one_async(c, script, keys, args) for c in clients)))
