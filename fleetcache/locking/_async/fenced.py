"""AsyncFencedLock: a single-instance lock whose every grant carries a larger fence.

One Lua script takes the lock (``SET NX PX``) and returns the next fence,
``max(counter + 1, server time in µs)``, stored in a counter key beside the lock (same hash
tag, so Cluster-safe when the name carries one).  Release and extend are the same
owner-checked compare-and-act scripts as AsyncSetNxLock.

Guarantee: on one Redis server, fences of successive grants of a name strictly increase,
also after the counter key expired (it has a TTL like every fleetcache key), provided the
server's clock did not step back by more than the time since the last grant.  Limits:
with asynchronous replication a failover can lose the latest grant *and* the counter;
the promoted replica then hands out fences from its own clock — still larger than those
granted before unless its clock is behind the old master's by more than the gap since the
last grant.  For locks that survive a node loss use Redlock.
"""

from __future__ import annotations

import time

from fleetcache.backend import AsyncClient, map_redis_errors, register_async
from fleetcache.clusters import is_cluster
from fleetcache.locking._async.setnx import AsyncSetNxLock
from fleetcache.locking.checks import check_name, check_seconds, ttl_ms
from fleetcache.locking.lease import Lease, drift, new_token
from fleetcache.locking.slots import check_cluster_name, companion

_PKG = "fleetcache.locking"
#: Default lifetime of a name's fence counter after its last grant (seconds).
COUNTER_TTL = 7 * 86400.0


class AsyncFencedLock(AsyncSetNxLock):
    """Lock on one Redis server that hands out strictly increasing fencing tokens.

    ``counter_ttl`` is how long a name's fence counter lives after its last grant (at least
    the lease's TTL).  Fences stay increasing after the counter expired (they start from the
    server clock), so it only needs to outlive clock steps; the cache's own lock uses the
    entries' TTL, so that no counter outlives the entry it guards by days.
    """

    def __init__(
        self, client: AsyncClient, *, prefix: str = "", counter_ttl: float = COUNTER_TTL
    ) -> None:
        check_seconds("counter_ttl", counter_ttl)
        self.counter_ttl = counter_ttl
        super().__init__(client, prefix=prefix)

    def _use(self, client: AsyncClient) -> None:
        super()._use(client)
        self._acquire = register_async(client, _PKG, "fenced_acquire")
        self._on_cluster = is_cluster(client)

    def fence_key(self, name: str) -> str:
        """The key holding ``name``'s fence counter, in the lock key's Cluster slot
        (:func:`fleetcache.locking.slots.companion`)."""
        return companion(self._key(name), ":fence")

    async def try_acquire(self, name: str, ttl: float) -> Lease | None:
        """One attempt; the lease carries the next fence."""
        check_name(name)
        check_seconds("ttl", ttl)
        if self._on_cluster:
            check_cluster_name(self._key(name))
        token = new_token()
        start = time.monotonic()
        with map_redis_errors(f"acquiring lock {name!r}"):
            fence = await self._acquire(
                keys=[self._key(name), self.fence_key(name)],
                args=[token, ttl_ms(ttl), ttl_ms(max(self.counter_ttl, ttl))],
            )
        if fence is None:
            return None
        return Lease(name, token, int(fence), start + ttl - drift(ttl))
