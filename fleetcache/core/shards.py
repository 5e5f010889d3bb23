"""Sharded notifications on Redis Cluster, for threads: a hand-written pair (ARCHITECTURE §14).

On a cluster, a leader publishes an entry's ready or failed message with ``SPUBLISH`` on
the entry's shard channel (:func:`fleetcache.core.events.shard_channel`), which only the
nodes of the shard that owns the entry handle.  A follower watches that channel while it
waits: :meth:`Shards.watching` subscribes (``SSUBSCRIBE``) on the connection this process
keeps to the channel's master -- one connection per master per process, whatever the number
of keys -- and waits (bounded) for the confirmation before the follower looks at Redis, so
that no message is lost between its look and its wait.  The last follower of a channel
unsubscribes.  A reader thread per connection dispatches the messages to the cache's
waiters (:class:`~fleetcache.core.notifier.Registry`).

Failures cost latency, never correctness: when a connection fails, or Redis moves a slot
away (it then unsubscribes the channel itself), the waiters of that connection are woken,
look again and keep their jittered poll; the next follower of the shard connects to the
master the cluster map names then.  :class:`AsyncShards` (``async_shards.py``) is the
asyncio twin; :class:`NoShards` stands in on a single node, where the namespace channel
carries every message.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import redis
from redis.crc import key_slot

from fleetcache.backend import cluster_settings
from fleetcache.core import events
from fleetcache.core.notifier import READ_TIMEOUT, Registry

log = logging.getLogger("fleetcache.notifier")

def node_settings(cluster: Any, timeout: float) -> dict[str, Any]:
    """Connection settings of a shard subscriber: the cluster client's auth and TLS, RESP2,
    bytes, ``timeout`` to connect (reads block: the reader polls with its own timeout)."""
    kept = cluster_settings(cluster)
    kept.update(protocol=2, decode_responses=False, socket_connect_timeout=timeout,
                socket_timeout=None)
    return kept


def owner_of(cluster: Any, channel: str) -> tuple[str, int]:
    """``(host, port)`` of the master serving ``channel``'s slot in ``cluster``'s map."""
    node = cluster.nodes_manager.get_node_from_slot(key_slot(channel.encode()))
    return node.host, node.port


class _Settable(Protocol):
    def set(self) -> None: ...


def dispatch(
    msg: dict[str, Any], confirmed: Mapping[str, _Settable], registry: Registry
) -> str | None:
    """Act on one message of a shard connection (both twins): a confirmation releases the
    follower waiting for it, a message goes to the registry, and Redis unsubscribing a
    channel (its slot moved) wakes that entry's waiters so that they poll -- the channel is
    returned, for the caller to forget."""
    channel = msg["channel"]
    channel = channel.decode() if isinstance(channel, bytes) else str(channel)
    kind = msg["type"]
    if kind == "ssubscribe":
        done = confirmed.get(channel)
        if done is not None:
            done.set()
    elif kind == "sunsubscribe" and channel in confirmed:
        registry.wake(channel.removesuffix(events.SHARD_SUFFIX))
        return channel
    elif kind == "smessage":
        registry.dispatch(msg["data"])
    return None


def release(confirmed: Mapping[str, _Settable], registry: Registry) -> None:
    """A connection ended: nobody waits for a confirmation that will not come, and every
    waiter looks again (and polls)."""
    for done in list(confirmed.values()):
        done.set()
    registry.wake(None)


class _Link:
    """One connection to one master: its subscriptions and its reader thread."""

    def __init__(self, client: redis.Redis, registry: Registry) -> None:
        self.client = client
        self.pubsub = client.pubsub()
        self.registry = registry
        self.alive = True
        self.confirmed: dict[str, threading.Event] = {}
        self.sending = threading.Lock()  # one command at a time on the connection
        self.thread = threading.Thread(target=self._read, name="fleetcache-shards", daemon=True)

    def subscribe(self, channel: str, timeout: float) -> bool:
        """SSUBSCRIBE ``channel``; True once Redis confirmed it within ``timeout``."""
        with self.sending:
            done = self.confirmed.get(channel)
            if done is None:
                done = self.confirmed[channel] = threading.Event()
                self.pubsub.ssubscribe(channel)
                if not self.thread.is_alive():  # read once there is a connection
                    self.thread.start()
        return done.wait(timeout) and self.alive

    def unsubscribe(self, channel: str) -> None:
        """SUNSUBSCRIBE ``channel``."""
        with self.sending:
            self.confirmed.pop(channel, None)
            if self.alive:
                self.pubsub.sunsubscribe(channel)

    def _read(self) -> None:
        try:
            while self.alive:
                msg = self.pubsub.get_message(timeout=READ_TIMEOUT)
                dropped = None if msg is None else dispatch(msg, self.confirmed, self.registry)
                if dropped is not None:
                    self.confirmed.pop(dropped, None)
        except Exception as exc:  # a failed connection ends this link, never the process
            log.debug("shard subscription failed (%s: %s)", type(exc).__name__, exc)
        finally:
            self.alive = False
            release(self.confirmed, self.registry)
            with contextlib.suppress(Exception):
                self.pubsub.close()

class Shards:
    """The shard subscriptions of one cache in one process (module docstring)."""

    def __init__(self, cluster: Any, registry: Registry, timeout: float,
                 enabled: Callable[[], bool] = lambda: True) -> None:
        self._cluster = cluster
        self._enabled = enabled
        self._registry = registry
        self._timeout = timeout
        self._settings = node_settings(cluster, timeout)
        self._guard = threading.Lock()
        self._links: dict[tuple[str, int], _Link] = {}
        self._refs: dict[str, tuple[_Link, int]] = {}
        self.subscribed = 0
        """Subscriptions confirmed (a count, for tests and stats)."""

    def links(self) -> int:
        """Connections open now (one per master followed)."""
        with self._guard:
            return sum(link.alive for link in self._links.values())

    @contextlib.contextmanager
    def watching(self, key: str) -> Iterator[bool]:
        """Subscribed to ``key``'s shard channel inside the block (True), or not (False:
        the follower polls)."""
        if not self._enabled():  # Redis 6.2: the namespace channel carries the messages
            yield False
            return
        channel = events.shard_channel(key)
        link = None
        try:
            link = self._enter(channel)
            ok = link is not None and link.subscribe(channel, self._timeout)
        except Exception as exc:  # a subscription is an optimisation: never fail a call
            log.debug("shard subscription to %s failed (%s)", channel, exc)
            ok = False
        if ok:
            self.subscribed += 1
        try:
            yield ok
        finally:
            if link is not None:
                self._leave(channel, link)

    def _enter(self, channel: str) -> _Link | None:
        owner = owner_of(self._cluster, channel)
        with self._guard:
            held = self._refs.get(channel)
            if held is not None and held[0].alive:
                self._refs[channel] = (held[0], held[1] + 1)
                return held[0]
            link = self._links.get(owner)
            if link is None or not link.alive:
                host, port = owner
                link = _Link(redis.Redis(host=host, port=port, **self._settings),
                             self._registry)
                self._links[owner] = link
            self._refs[channel] = (link, 1)
            return link

    def _leave(self, channel: str, link: _Link) -> None:
        with self._guard:
            held = self._refs.get(channel)
            if held is None or held[0] is not link:
                return
            if held[1] > 1:
                self._refs[channel] = (link, held[1] - 1)
                return
            del self._refs[channel]
        with contextlib.suppress(Exception):
            link.unsubscribe(channel)

    def stop(self) -> None:
        """Close every connection (the readers end)."""
        with self._guard:
            links, self._links = list(self._links.values()), {}
            self._refs.clear()
        for link in links:
            link.alive = False
            with contextlib.suppress(Exception):
                link.client.connection_pool.disconnect()
        for link in links:
            if link.thread.is_alive() and link.thread is not threading.current_thread():
                link.thread.join(2 * READ_TIMEOUT + 1.0)


class NoShards:
    """On a single node: nothing to subscribe per entry (the namespace channel is enough)."""

    subscribed = 0

    def links(self) -> int:
        """No connections."""
        return 0

    @contextlib.contextmanager
    def watching(self, key: str) -> Iterator[bool]:
        """Nothing to do."""
        yield False

    def stop(self) -> None:
        """Nothing to close."""
