"""Lock backends by name for the benches (sync and asyncio), and throwaway lock nodes.

``--lock NAME`` picks a factory here.  A factory takes the clients of the lock nodes:
``setnx`` and ``fenced`` use the first one, ``redlock`` all of them (one per independent
master, quorum N // 2 + 1).  :func:`lock_nodes` yields the URLs of the nodes: those the
user passed (``--lock-urls``), or throwaway local ``redis-server`` processes started for
the block and stopped, by PID, when it exits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from fleetcache.cli.common import connect, local_nodes, log
from fleetcache.locking import (
    AsyncFencedLock,
    AsyncLock,
    AsyncRedlock,
    AsyncSetNxLock,
    FencedLock,
    Lock,
    Redlock,
    SetNxLock,
)

#: Nodes started for ``--lock redlock`` when no ``--lock-urls`` are given.
REDLOCK_NODES = 3
#: Socket timeout of lock clients: Redlock's per-node timeout (seconds).
LOCK_TIMEOUT = 1.0

#: Sync backends: name -> factory taking the lock nodes' clients.
SYNC_LOCKS: dict[str, Callable[[Sequence[redis.Redis]], Lock]] = {
    "setnx": lambda clients: SetNxLock(clients[0]),
    "fenced": lambda clients: FencedLock(clients[0]),
    "redlock": lambda clients: Redlock(list(clients)),
}

#: asyncio backends: name -> factory taking the lock nodes' asyncio clients.
ASYNC_LOCKS: dict[str, Callable[[Sequence[aioredis.Redis]], AsyncLock]] = {
    "setnx": lambda clients: AsyncSetNxLock(clients[0]),
    "fenced": lambda clients: AsyncFencedLock(clients[0]),
    "redlock": lambda clients: AsyncRedlock(list(clients)),
}


def parse_urls(text: str | None) -> list[str]:
    """``'URL,URL'`` -> a list of URLs (empty for None or '')."""
    return [u.strip() for u in (text or "").split(",") if u.strip()]


def parse_counts(text: str) -> list[int]:
    """``'3,5'`` -> ``[3, 5]``; ``''``, ``'0'`` or ``'none'`` -> ``[]``.  ValueError if bad."""
    if text.strip().lower() in ("", "0", "none", "off"):
        return []
    counts = [int(x) for x in text.split(",") if x.strip()]
    if any(n < 1 for n in counts):
        raise ValueError(f"node counts must be >= 1, not {text!r}")
    return sorted(set(counts))


def sync_clients(urls: Sequence[str]) -> list[redis.Redis]:
    """One client per lock node, with :data:`LOCK_TIMEOUT` as socket timeout."""
    return [connect(u, socket_timeout=LOCK_TIMEOUT) for u in urls]


def async_client(url: str, **overrides: Any) -> aioredis.Redis:
    """An asyncio client with bounded timeouts and no retry storm (bytes responses)."""
    options: dict[str, Any] = {
        "socket_timeout": 5.0,
        "socket_connect_timeout": 5.0,
        "retry": AsyncRetry(NoBackoff(), 1),
    }
    options.update(overrides)
    client: aioredis.Redis = aioredis.Redis.from_url(url, **options)
    return client


def async_clients(urls: Sequence[str]) -> list[aioredis.Redis]:
    """The asyncio twin of :func:`sync_clients`."""
    return [async_client(u, socket_timeout=LOCK_TIMEOUT) for u in urls]


def throwaway_nodes(n: int) -> contextlib.AbstractContextManager[list[str]]:
    """URLs of ``n`` fresh local Redis nodes, all stopped (by PID) when the block exits."""
    return local_nodes(n)


@contextlib.contextmanager
def lock_nodes(n: int, urls: Sequence[str] = (), *, quiet: bool = False) -> Iterator[list[str]]:
    """URLs of ``n`` lock nodes: the first ``n`` of ``urls``, else throwaway local nodes."""
    if n < 1:
        yield []
        return
    if urls:
        if len(urls) < n:
            raise ValueError(f"{n} lock nodes needed, {len(urls)} URL(s) given")
        yield list(urls[:n])
        return
    with throwaway_nodes(n) as started:
        if not quiet:
            log(f"started {n} throwaway lock node(s): {', '.join(started)}")
        yield started
