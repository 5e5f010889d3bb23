"""AsyncBinding: the parts of a cache that belong to one event loop (ARCHITECTURE §10).

Connections, Lua scripts, the lock's clients, the notifier task and the single-flight
events of an asyncio cache all belong to the event loop they were first used on.  The
cache keeps them together in one binding; used on another loop (a script or a Celery task
that calls ``asyncio.run()`` twice with one cache), it builds a new binding for that loop
instead of touching the dead loop's objects.  A forked child builds a new one too.  The sync
twin (``_sync/binding.py``, generated) has one binding per process: threads share it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fleetcache.backend import AsyncClient, bounded_async_client
from fleetcache.clusters import AsyncClusterSubscriber, is_cluster, subscriber_async
from fleetcache.core._async.store import AsyncStore
from fleetcache.core.async_notifier import AsyncNotifier
from fleetcache.core.async_shards import AsyncNoShards, AsyncShards
from fleetcache.core.background import AsyncBackground
from fleetcache.core.hotkeys import HotKeys
from fleetcache.core.keys import KeyLayout
from fleetcache.core.leaders import AsyncLeaders
from fleetcache.core.policy import Policy
from fleetcache.core.runtime import running_elsewhere
from fleetcache.core.singleflight import AsyncSingleFlight
from fleetcache.locking._async.base import AsyncLock
from fleetcache.locking._async.fenced import AsyncFencedLock

log = logging.getLogger("fleetcache")


class AsyncBinding:
    """The loop-bound parts of one cache."""

    def __init__(
        self,
        loop: Any,
        store: AsyncStore,
        lock: AsyncLock,
        owned: list[AsyncClient | AsyncClusterSubscriber],
    ) -> None:
        #: The event loop this binding belongs to (None: not used on any loop yet).
        self.loop = loop
        self.store = store
        self.lock = lock
        #: Clients whose pools the cache opened itself (``close()`` disconnects them).
        self.owned = owned
        self.flights = AsyncSingleFlight()
        self.leaders = AsyncLeaders()
        self.background = AsyncBackground()
        self.hot = HotKeys()
        self.notifier: AsyncNotifier
        #: Per-entry shard subscriptions (Redis Cluster), or a stand-in doing nothing.
        self.shards: AsyncShards | AsyncNoShards = AsyncNoShards()
        #: Set in a forked child: inherited from the parent, never to be used again.
        self.forked = False

    def check_rebind(self, namespace: str) -> None:
        """Raise unless this binding may be replaced by one for another event loop."""
        if self.forked:
            return
        if running_elsewhere(self.loop):
            raise RuntimeError(
                f"this AsyncCache ({namespace!r}) is in use on another event loop that is "
                "still running; create one AsyncCache per event loop"
            )
        log.info("AsyncCache %r used on a new event loop: opening new connections", namespace)


def bind_lock_async(
    source: AsyncLock | None, client: AsyncClient, own: AsyncClient, policy: Policy
) -> tuple[AsyncLock, list[AsyncClient]]:
    """The lock the cache's leaders use, and the clients it opened for it.

    The default is a fenced lock on the cache's own bounded pool, whose fence counters
    live as long as the entries.  A lock of ours built on the client the cache was given
    shares that pool; one built on another client gets a bounded copy (so the fail-open
    bound holds, ARCHITECTURE §8); a lock of another kind is used as given.
    """
    if source is None:
        return AsyncFencedLock(own, counter_ttl=max(policy.ttl, policy.lock_ttl)), []
    timeout = policy.redis_timeout
    if timeout is None:
        return source, []
    on_client: Callable[[AsyncClient], AsyncLock] | None = getattr(source, "on_client", None)
    if on_client is not None and getattr(source, "client", None) is client:
        return on_client(own), []
    bounded: Callable[[float], AsyncLock] | None = getattr(source, "bounded", None)
    if bounded is None:
        return source, []
    copy = bounded(timeout)
    before = _clients_of(source)
    return copy, [c for c in _clients_of(copy) if all(c is not s for s in before)]


def _clients_of(lock: object) -> list[Any]:
    clients = getattr(lock, "clients", None)
    if clients is not None:
        return list(clients)
    client = getattr(lock, "client", None)
    return [] if client is None else [client]


def bind_async(  # noqa: PLR0917 - one call site, the cache's _bind
    loop: Any,
    client: AsyncClient,
    lock_source: AsyncLock | None,
    policy: Policy,
    layout: KeyLayout,
    gen_ttl_ms: int,
    *,
    on_connect: Callable[[AsyncBinding], Awaitable[None]],
    on_generation: Callable[[AsyncBinding, int], Awaitable[None]],
    on_bad_message: Callable[[], None],
) -> AsyncBinding:
    """Open a binding: the cache's bounded pool, its lock, store and notifier."""
    own = bounded_async_client(client, policy.redis_timeout, policy.max_connections)
    owned = [own] if own is not client else []
    lock, lock_owned = bind_lock_async(lock_source, client, own, policy)
    sub = subscriber_async(own)
    owned_all: list[AsyncClient | AsyncClusterSubscriber] = [*owned, *lock_owned]
    if sub is not own:
        owned_all.append(sub)
    b = AsyncBinding(loop, AsyncStore(own, layout, gen_ttl_ms), lock, owned_all)
    b.notifier = AsyncNotifier(
        sub,
        layout.channel,
        functools.partial(on_connect, b),
        functools.partial(on_generation, b),
        on_bad_message=on_bad_message,
    )
    if is_cluster(own):
        store = b.store
        b.shards = AsyncShards(own, b.notifier.registry, policy.redis_timeout or 1.0,
                               lambda: store.sharded)
    return b
