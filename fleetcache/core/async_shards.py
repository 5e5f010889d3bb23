"""Sharded notifications on Redis Cluster, for asyncio: the twin of ``shards.py``.

Same rules as :class:`fleetcache.core.shards.Shards` (read its module docstring): one
connection per master followed, a reader task per connection, a bounded wait for the
subscription's confirmation, and any failure only wakes the waiters so that they poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis import asyncio as aioredis

from fleetcache.core import events
from fleetcache.core.notifier import READ_TIMEOUT, Registry
from fleetcache.core.shards import dispatch, node_settings, owner_of, release

log = logging.getLogger("fleetcache.notifier")

_RUNNING: set[asyncio.Task[None]] = set()


class _AsyncLink:
    """One connection to one master: its subscriptions and its reader task."""

    def __init__(self, client: aioredis.Redis, registry: Registry) -> None:
        self.client = client
        self.pubsub = client.pubsub()
        self.registry = registry
        self.alive = True
        self.confirmed: dict[str, asyncio.Event] = {}
        self.sending = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    async def subscribe(self, channel: str, timeout: float) -> bool:
        """SSUBSCRIBE ``channel``; True once Redis confirmed it within ``timeout``."""
        async with self.sending:
            done = self.confirmed.get(channel)
            if done is None:
                done = self.confirmed[channel] = asyncio.Event()
                await self.pubsub.ssubscribe(channel)
                if self.task is None:  # read once there is a connection
                    self.task = asyncio.get_running_loop().create_task(self._read())
                    _RUNNING.add(self.task)
                    self.task.add_done_callback(_RUNNING.discard)
        try:
            async with asyncio.timeout(timeout):
                await done.wait()
        except TimeoutError:
            return False
        return self.alive

    async def unsubscribe(self, channel: str) -> None:
        """SUNSUBSCRIBE ``channel``."""
        async with self.sending:
            self.confirmed.pop(channel, None)
            if self.alive:
                await self.pubsub.sunsubscribe(channel)

    async def _read(self) -> None:
        try:
            while self.alive:
                msg = await self.pubsub.get_message(timeout=READ_TIMEOUT)
                dropped = None if msg is None else dispatch(msg, self.confirmed, self.registry)
                if dropped is not None:
                    self.confirmed.pop(dropped, None)
        except Exception as exc:  # a failed connection ends this link, never the loop
            log.debug("shard subscription failed (%s: %s)", type(exc).__name__, exc)
        finally:
            self.alive = False
            release(self.confirmed, self.registry)
            with contextlib.suppress(Exception):
                await asyncio.shield(self.pubsub.aclose())

class AsyncShards:
    """The shard subscriptions of one asyncio cache on one event loop."""

    def __init__(self, cluster: Any, registry: Registry, timeout: float,
                 enabled: Callable[[], bool] = lambda: True) -> None:
        self._cluster = cluster
        self._enabled = enabled
        self._registry = registry
        self._timeout = timeout
        self._settings = node_settings(cluster, timeout)
        self._links: dict[tuple[str, int], _AsyncLink] = {}
        self._refs: dict[str, tuple[_AsyncLink, int]] = {}
        self.subscribed = 0
        """Subscriptions confirmed (a count, for tests and stats)."""

    def links(self) -> int:
        """Connections open now (one per master followed)."""
        return sum(link.alive for link in self._links.values())

    @contextlib.asynccontextmanager
    async def watching(self, key: str) -> AsyncIterator[bool]:
        """Subscribed to ``key``'s shard channel inside the block (True), or not (False:
        the follower polls)."""
        if not self._enabled():  # Redis 6.2: the namespace channel carries the messages
            yield False
            return
        channel = events.shard_channel(key)
        link = None
        try:
            link = self._enter(channel)
            ok = link is not None and await link.subscribe(channel, self._timeout)
        except Exception as exc:  # a subscription is an optimisation: never fail a call
            log.debug("shard subscription to %s failed (%s)", channel, exc)
            ok = False
        if ok:
            self.subscribed += 1
        try:
            yield ok
        finally:
            if link is not None:
                await self._leave(channel, link)

    def _enter(self, channel: str) -> _AsyncLink | None:
        held = self._refs.get(channel)
        if held is not None and held[0].alive:
            self._refs[channel] = (held[0], held[1] + 1)
            return held[0]
        owner = owner_of(self._cluster, channel)
        link = self._links.get(owner)
        if link is None or not link.alive:
            host, port = owner
            link = _AsyncLink(aioredis.Redis(host=host, port=port, **self._settings),
                              self._registry)
            self._links[owner] = link
        self._refs[channel] = (link, 1)
        return link

    async def _leave(self, channel: str, link: _AsyncLink) -> None:
        held = self._refs.get(channel)
        if held is None or held[0] is not link:
            return
        if held[1] > 1:
            self._refs[channel] = (link, held[1] - 1)
            return
        del self._refs[channel]
        with contextlib.suppress(Exception):
            await link.unsubscribe(channel)

    async def stop(self) -> None:
        """Close every connection (the readers end)."""
        links, self._links = list(self._links.values()), {}
        self._refs.clear()
        for link in links:
            link.alive = False
            if link.task is not None and not link.task.done():
                link.task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait([link.task], timeout=1.0)
            with contextlib.suppress(Exception):
                await link.client.connection_pool.disconnect()


class AsyncNoShards:
    """On a single node: nothing to subscribe per entry."""

    subscribed = 0

    def links(self) -> int:
        """No connections."""
        return 0

    @contextlib.asynccontextmanager
    async def watching(self, key: str) -> AsyncIterator[bool]:
        """Nothing to do."""
        yield False

    async def stop(self) -> None:
        """Nothing to close."""
