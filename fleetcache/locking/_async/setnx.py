"""AsyncSetNxLock: the single-instance lock, ``SET name token NX PX ttl``.

Acquire is the plain command (no script needed); release and extend are Lua
compare-and-act scripts, so a holder whose lease expired can never delete or extend the
lease of the next holder.  No fencing token (``Lease.fence`` is None): use the fenced
lock where a late writer must be refused.

Why not python-redis-lock's ``Lock`` here: it keeps the token on the lock object (one
object per holder), expires in whole seconds, and its acquire is a blocking wait on a
signal list.  This backend is stateless (the caller holds the :class:`Lease`), has
millisecond TTLs, and the cache's followers wait on pub/sub instead.  Users who already run
python-redis-lock can plug it in through :class:`~fleetcache.locking.RedisLockAdapter`.
"""

from __future__ import annotations

import copy
import time
from typing import Self

from redis import asyncio as aioredis

from fleetcache.backend import (
    AsyncClient,
    bounded_lock_async_client,
    map_redis_errors,
    register_async,
)
from fleetcache.errors import LockLost
from fleetcache.locking._async.base import AsyncLockBase
from fleetcache.locking.checks import check_lease, check_name, check_seconds, ttl_ms
from fleetcache.locking.lease import Lease, drift, new_token

_PKG = "fleetcache.locking"


class AsyncSetNxLock(AsyncLockBase):
    """Lock on one Redis server with ``SET NX PX`` and Lua compare-and-delete."""

    def __init__(self, client: AsyncClient, *, prefix: str = "") -> None:
        if not isinstance(client, (aioredis.Redis, aioredis.RedisCluster)):
            raise TypeError(
                f"{type(self).__name__} needs a redis.asyncio.Redis or RedisCluster client, "
                f"not {type(client).__name__}"
            )
        self.prefix = prefix
        self._use(client)

    def _use(self, client: AsyncClient) -> None:
        """Talk to Redis through ``client`` (its scripts registered on it)."""
        self.client = client
        self._release = register_async(client, _PKG, "compare_and_delete")
        self._extend = register_async(client, _PKG, "compare_and_extend")

    def on_client(self, client: AsyncClient) -> Self:
        """A copy of this lock (same class, keys and options) that talks through ``client``."""
        twin = copy.copy(self)
        twin._use(client)
        return twin

    def bounded(self, timeout: float) -> Self:
        """A copy whose every call is bounded by ``timeout`` seconds (the cache uses it so
        that its fail-open bound holds whatever client the lock was built on)."""
        return self.on_client(bounded_lock_async_client(self.client, timeout))

    def _key(self, name: str) -> str:
        return self.prefix + name

    async def try_acquire(self, name: str, ttl: float) -> Lease | None:
        """One ``SET NX PX`` attempt."""
        check_name(name)
        check_seconds("ttl", ttl)
        token = new_token()
        start = time.monotonic()
        with map_redis_errors(f"acquiring lock {name!r}"):
            ok = await self.client.set(self._key(name), token, nx=True, px=ttl_ms(ttl))
        if not ok:
            return None
        return Lease(name, token, None, start + ttl - drift(ttl))

    async def extend(self, lease: Lease, ttl: float) -> Lease:
        """Reset the TTL if we still hold the lock; raise LockLost otherwise."""
        check_lease(lease)
        check_seconds("ttl", ttl)
        start = time.monotonic()
        with map_redis_errors(f"extending lock {lease.name!r}"):
            ok = await self._extend(keys=[self._key(lease.name)], args=[lease.token, ttl_ms(ttl)])
        if not ok:
            raise LockLost(lease.name, "expired or taken before extend")
        return lease.renewed(start + ttl - drift(ttl))

    async def release(self, lease: Lease) -> bool:
        """Delete the lock if we still hold it; False if it had expired or been taken."""
        check_lease(lease)
        with map_redis_errors(f"releasing lock {lease.name!r}"):
            return bool(await self._release(keys=[self._key(lease.name)], args=[lease.token]))
