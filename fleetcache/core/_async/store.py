"""AsyncStore: every Redis command and script the cache sends, one method each.

This asyncio module is the source; ``fleetcache/core/_sync/store.py`` (:class:`Store`) is
generated from it by ``scripts/unasync.py``.  The flow that decides *when* to send what is
in ``cache.py``; the keys come from :class:`~fleetcache.core.keys.KeyLayout`, the messages
from :mod:`fleetcache.core.events`, the scripts from ``core/lua/`` (ARCHITECTURE §3, §6).
Every redis-py error leaves as :class:`~fleetcache.errors.BackendError` (an outage) or
:class:`~fleetcache.errors.CommandRefused` (an error reply).
"""

from __future__ import annotations

from typing import Any

from fleetcache.backend import (
    REDIS_ERRORS,
    AsyncClient,
    as_backend_error,
    lua_source,
    map_redis_errors,
    register_async,
)
from fleetcache.clusters import is_cluster, node_client_async
from fleetcache.core import events
from fleetcache.core.keys import EntryKeys, KeyLayout

_PKG = "fleetcache.core"

#: write.lua / record.lua results.
REFUSED, DONE, UNPUBLISHED = 0, 1, 2

#: The first Redis version with sharded pub/sub (SPUBLISH, SSUBSCRIBE).
SHARDED_PUBSUB = (7, 0)


class AsyncStore:
    """The Redis side of one cache: entries, fences, failure records, the generation."""

    def __init__(self, client: AsyncClient, layout: KeyLayout, gen_ttl_ms: int) -> None:
        self.redis = client
        self._layout = layout
        self._gen_ttl_ms = gen_ttl_ms
        self._claim = register_async(client, _PKG, "claim")
        self._write = register_async(client, _PKG, "write")
        self._write_source = lua_source(_PKG, "write")
        self._record = register_async(client, _PKG, "record")
        self._hit = register_async(client, _PKG, "hit")
        self._ensure_gen = register_async(client, _PKG, "ensure_gen")
        self._invalidate = register_async(client, _PKG, "invalidate")
        #: Ready and failed messages go to each entry's shard channel (SPUBLISH, so that only
        #: the shard owning the entry handles them) on Redis Cluster >= 7.0, else to the
        #: namespace channel (ARCHITECTURE §14).  Set by the cache once it knows the version.
        self.sharded = is_cluster(client)
        self._sharding_checked = False

    async def check_sharding(self) -> None:
        """On a cluster: shard channels when the servers have them (Redis >= 7.0), the
        namespace channel otherwise (Redis 6.2).  Asks the generation key's master once."""
        if not is_cluster(self.redis) or self._sharding_checked:
            return
        node = await node_client_async(self.redis, self._layout.gen)
        with map_redis_errors("INFO server"):
            info: Any = await node.info("server")
        version = tuple(int(x) for x in str(info.get("redis_version", "0.0")).split(".")[:2])
        self.sharded = version >= SHARDED_PUBSUB
        self._sharding_checked = True

    def channel_for(self, key: str) -> tuple[str, str]:
        """``(command, channel)`` that wakes the followers of entry ``key``."""
        if self.sharded:
            return "SPUBLISH", events.shard_channel(key)
        return "PUBLISH", self._layout.channel

    async def get(self, key: str) -> bytes | None:
        """The hit path: one GET."""
        try:
            raw: Any = await self.redis.get(key)
        except REDIS_ERRORS as exc:
            raise as_backend_error(exc, "GET") from exc
        return raw  # type: ignore[no-any-return]

    async def hit(
        self,
        keys: EntryKeys,
        *,
        threshold: int,
        window_ms: int,
        hot_ttl_ms: int,
        stale_ms: int,
        max_age_ms: int | None,
        reads: int,
    ) -> tuple[bytes | None, int, int, int]:
        """The hit path with hot keys on: one script counts ``reads`` and returns the
        entry, its slid fresh-until in ms (0: none), the reads counted in the window so far
        and the window's remaining ms."""
        with map_redis_errors("hit"):
            reply: Any = await self._hit(
                keys=[keys.value, keys.hits, keys.slid, keys.fence],
                args=[threshold, window_ms, hot_ttl_ms, stale_ms,
                      "" if max_age_ms is None else max_age_ms, reads],
            )
        if reply is None:
            return None, 0, 0, 0
        raw, slid, count, left = reply
        return raw, int(slid), int(count), int(left)

    async def peek(self, keys: EntryKeys) -> tuple[Any, Any, Any, Any]:
        """A follower's look, in one MGET: the entry, the failure record, the hand-off
        record and the fence the current leader claimed."""
        with map_redis_errors("MGET"):
            raw, err, handoff, fence = await self.redis.mget(
                keys.value, keys.error, keys.handoff, keys.fence
            )
        return raw, err, handoff, fence

    async def claim(
        self, keys: EntryKeys, fence: int | None, fence_ttl_ms: int
    ) -> tuple[bytes | None, int]:
        """A new leader's double-check; returns the entry (or None) and the leader's fence."""
        with map_redis_errors("claim"):
            raw, claimed = await self._claim(
                keys=[keys.value, keys.error, keys.fence],
                args=["" if fence is None else str(fence), fence_ttl_ms],
            )
        return raw, int(claimed)

    async def write(
        self, keys: EntryKeys, payload: bytes, ttl_ms: int, fence: int | None
    ) -> int:
        """Store an entry and wake its followers: REFUSED, DONE or UNPUBLISHED."""
        with map_redis_errors("write"):
            result: Any = await self._write(
                keys=[keys.value, keys.fence], args=self._write_args(keys, payload, ttl_ms, fence)
            )
        return int(result)

    async def write_acked(  # noqa: PLR0917 - write's arguments and the WAIT's
        self, keys: EntryKeys, payload: bytes, ttl_ms: int, fence: int | None, acks: int,
        timeout_ms: int,
    ) -> tuple[int, int]:
        """:meth:`write`, then ``WAIT acks timeout_ms`` on the same connection to the
        entry's master: ``(result, replicas that acknowledged)``."""
        node = await node_client_async(self.redis, keys.value)
        with map_redis_errors("write"):
            pipe = node.pipeline(transaction=False)
            pipe.eval(self._write_source, 2, keys.value, keys.fence,
                      *self._write_args(keys, payload, ttl_ms, fence))
            pipe.execute_command("WAIT", acks, timeout_ms)
            result, acked = await pipe.execute()
        return int(result), int(acked)

    def _write_args(
        self, keys: EntryKeys, payload: bytes, ttl_ms: int, fence: int | None
    ) -> list[Any]:
        command, channel = self.channel_for(keys.value)
        fenced = "" if fence is None else str(fence)
        return [payload, ttl_ms, channel, events.ready(keys.value), fenced, command]

    async def fail(self, keys: EntryKeys, record: bytes, ttl_ms: int, fence: int) -> int:
        """Record a leader's failure and wake its followers: REFUSED, DONE or UNPUBLISHED."""
        return await self._leave(keys.error, keys, events.failed(keys.value), record, ttl_ms,
                                 fence)

    async def handoff(self, keys: EntryKeys, payload: bytes, ttl_ms: int, fence: int) -> int:
        """Hand a value cache_if refused to the followers: REFUSED, DONE or UNPUBLISHED."""
        return await self._leave(keys.handoff, keys, events.ready(keys.value), payload, ttl_ms,
                                 fence)

    async def _leave(  # noqa: PLR0917 - record.lua's arguments
        self, key: str, keys: EntryKeys, message: bytes, record: bytes, ttl_ms: int, fence: int
    ) -> int:
        """record.lua: leave ``record`` at ``key`` (fenced) and publish ``message``."""
        command, channel = self.channel_for(keys.value)
        with map_redis_errors("leaving a record for the followers"):
            result: Any = await self._record(
                keys=[key, keys.fence],
                args=[record, ttl_ms, channel, message, str(fence), command],
            )
        return int(result)

    async def wake(self, key: str) -> None:
        """Wake the followers of ``key`` (its leader gave up without a value)."""
        command, channel = self.channel_for(key)
        with map_redis_errors("publish"):
            if command == "SPUBLISH":
                await self.redis.spublish(channel, events.ready(key))
            else:
                await self.redis.publish(channel, events.ready(key))

    async def delete(self, keys: EntryKeys) -> bool:
        """Delete an entry with its fence and failure record; True if there was one."""
        with map_redis_errors("delete"):
            return bool(await self.redis.delete(keys.value, keys.fence, keys.error))

    async def read_generation(self) -> int | None:
        """The generation key as it is (one GET; None when missing or not a number)."""
        with map_redis_errors("reading the namespace generation"):
            raw = await self.redis.get(self._layout.gen)
        try:
            return None if raw is None else int(raw)
        except ValueError:
            return None

    async def ensure_generation(self, floor: int | None) -> int:
        """The generation, created when missing, raised to ``floor`` when it went back; its
        TTL refreshed."""
        with map_redis_errors("reading the namespace generation"):
            gen, _ = await self._ensure_gen(
                keys=[self._layout.gen],
                args=[
                    self._gen_ttl_ms,
                    self._layout.channel,
                    events.GENERATION_PREFIX,
                    "" if floor is None else str(floor),
                ],
            )
        return int(gen)

    async def invalidate(self, floor: int | None) -> int:
        """Move the namespace to a new generation newer than ``floor``; return it."""
        with map_redis_errors("invalidate"):
            gen = await self._invalidate(
                keys=[self._layout.gen],
                args=[
                    self._gen_ttl_ms,
                    self._layout.channel,
                    events.GENERATION_PREFIX,
                    "" if floor is None else str(floor),
                ],
            )
        return int(gen)
