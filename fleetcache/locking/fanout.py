"""Run one Lua script on several independent Redis nodes at once: Redlock's round trip.

A hand-written pair (ARCHITECTURE §7): :func:`fan_out` for threads, :func:`fan_out_async` for
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

Connection lifecycle.  Checking a connection out of a redis-py pool and back in costs more
CPU than the round trip itself (locks, a queue, a ``can_read`` poll, metrics), so rounds do
not do it.  Beside each node pool lies a list of its idle connections (:data:`_IDLE`, keyed
weakly by the pool): a round pops one connection per node from its list and pushes it back
when the round ends, whatever happened (C-level list operations, atomic under the GIL: no
lock).  Only when the list is empty does a round take a new connection from the pool; it
never goes back to the pool but stays in the list.  So a pool holds at most as many
connections as rounds that ever ran on it at the same time, however many threads come and
go (every renewed lease has its own watchdog thread), and a thread that ends leaves nothing
behind.  A connection whose round failed is disconnected and reconnects lazily on its next
command; after an unexpected error (an exception raised inside the round: a reply may
still be on its way) every connection of the round is disconnected before it goes back.
Rounds beyond the pool's size wait the pool's timeout for a connection and count that node
as failed, as with any pool; the next attempt finds the connections idle again.  When a
pool is garbage-collected, its list goes with it and its connections close.  After
``fork`` the child inherits the lists, but a connection is only ever used by the process
that made it (``Connection.pid``): the child drops its parent's connections as it meets
them, and redis-py closes their file descriptors without shutting the sockets down, so
the parent keeps using them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
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


def redlock_client(client: redis.Redis, timeout: float | None = None) -> redis.Redis:
    """A client on its own pool with ``client``'s settings, no retries, no handshake; its
    socket timeouts capped at ``timeout`` when given."""
    if not isinstance(client, redis.Redis):
        raise TypeError(f"Redlock needs redis.Redis clients, not {type(client).__name__}")
    node_timeout(client)
    return unretried_client(client, timeout)


def redlock_async_client(client: aioredis.Redis, timeout: float | None = None) -> aioredis.Redis:
    """The asyncio twin of :func:`redlock_client`."""
    if not isinstance(client, aioredis.Redis):
        raise TypeError(
            f"Redlock needs redis.asyncio.Redis clients, not {type(client).__name__}"
        )
    node_timeout(client)
    return unretried_async_client(client, timeout)


def _read(conn: Any, script: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    try:
        return conn.read_response()
    except NoScriptError:
        conn.send_command("EVAL", script.source, len(keys), *keys, *args)
        return conn.read_response()


#: Per node pool, its connections that are not in a round right now (last in, first out).
_IDLE: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def _pop_own(idle: list[Any], pid: int) -> Any:
    """The last idle connection made by this process, or None; drops those of a parent."""
    while True:
        try:
            conn = idle.pop()
        except IndexError:
            return None
        if conn.pid == pid:
            return conn
        # Made before a fork: dropped, never reused nor shut down here (see module doc).


def _checkout(pool: Any, pid: int) -> tuple[Any, list[Any]]:
    """A connection to ``pool`` for one round, and the idle list it goes back to."""
    idle = _IDLE.get(pool)
    if idle is None:
        idle = _IDLE.setdefault(pool, [])
    conn = _pop_own(idle, pid)
    if conn is None:
        conn = pool.get_connection()  # out of the pool for good: it belongs to ``idle`` now
    return conn, idle


def fan_out(
    clients: Sequence[redis.Redis], script: LuaScript, keys: Sequence[Any], args: Sequence[Any]
) -> list[Any]:
    """Run ``script`` on every node in one parallel round; a reply or an exception each.

    The command is encoded once (the node clients are assumed to share an encoding) and
    written to every node's connection; then ``poll`` waits on all the sockets at once and
    each reply is read as it arrives, each node bounded by its own deadline.  Every
    connection taken goes back to its pool's idle list at the end of the round.
    """
    pid = os.getpid()
    results: list[Any] = [None] * len(clients)
    pending: dict[int, tuple[int, Any, float]] = {}  # fd -> (node, conn, deadline)
    taken: list[tuple[Any, list[Any]]] = []  # (conn, its idle list)
    poller = select.poll()
    packed: Any = None
    clean = False
    try:
        for i, client in enumerate(clients):
            conn: Any = None
            try:
                deadline = time.monotonic() + node_timeout(client)
                conn, idle = _checkout(client.connection_pool, pid)
                taken.append((conn, idle))
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
        clean = True  # every connection taken was read to its reply or disconnected
    finally:
        for conn, idle in taken:
            if not clean:  # an unexpected error: a reply may still be on its way
                conn.disconnect()
            idle.append(conn)
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
