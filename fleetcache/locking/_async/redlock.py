"""AsyncRedlock: a lock on a majority of N independent Redis masters, with fences.

Each round sends one Lua script to every node in parallel (``fan_out``), each node bounded
by its client's socket timeout.  Quorum ``N // 2 + 1``; validity ``ttl - elapsed - drift``
(drift ``ttl * 0.01 + 2 ms``); a failed attempt is released on every node; retries use
random exponential jitter (tenacity) within ``wait``; extend goes by quorum too.  Fencing
tokens stay strictly increasing when the set of reachable nodes changes: see
:mod:`fleetcache.locking.quorum` for the argument and its limits.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

from redis import asyncio as aioredis
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_result,
    stop_before_delay,
    wait_random_exponential,
)

from fleetcache.errors import LockLost, QuorumNotReached
from fleetcache.locking._async.base import AsyncLockBase
from fleetcache.locking.checks import check_lease, check_name, check_seconds, ttl_ms
from fleetcache.locking.fanout import LuaScript, fan_out_async, redlock_async_client
from fleetcache.locking.lease import Lease, new_token
from fleetcache.locking.quorum import (
    NodeReply,
    count_at_least,
    count_true,
    fence_for,
    parse_acquire,
    quorum,
    validity,
)

_PKG = "fleetcache.locking"
ACQUIRE = LuaScript.load(_PKG, "redlock_acquire")
RELEASE = LuaScript.load(_PKG, "compare_and_delete")
EXTEND = LuaScript.load(_PKG, "compare_and_extend")
RAISE_FENCE = LuaScript.load(_PKG, "raise_fence")
#: Default lifetime of a name's fence counter after its last grant (seconds); the nodes'
#: boot markers live at least this long whatever ``counter_ttl`` says.
COUNTER_TTL = 7 * 86400.0


@dataclass
class Attempt:
    """One acquire round: the lease, or what each node said."""

    lease: Lease | None = None
    granted: list[int] = field(default_factory=list)
    errors: dict[int, BaseException] = field(default_factory=dict)


class AsyncRedlock(AsyncLockBase):
    """Redlock over independent masters, one parallel round per acquire and release."""

    retry_min = 0.005
    retry_max = 0.1

    def __init__(
        self,
        clients: Sequence[aioredis.Redis],
        *,
        prefix: str = "",
        restart_delay: float = 0.0,
        counter_ttl: float = COUNTER_TTL,
    ) -> None:
        if isinstance(clients, (str, bytes)) or not isinstance(clients, Sequence):
            raise TypeError("Redlock takes a list of clients, one per independent master")
        if not clients:
            raise ValueError("Redlock needs at least one client")
        check_seconds("restart_delay", restart_delay, allow_zero=True)
        check_seconds("counter_ttl", counter_ttl)
        self._sources = list(clients)
        self.clients = [redlock_async_client(c) for c in clients]
        self.quorum = quorum(len(self.clients))
        self.prefix = prefix
        self.restart_delay = restart_delay
        self.counter_ttl = counter_ttl

    def bounded(self, timeout: float) -> Self:
        """A copy whose node clients time out after at most ``timeout`` seconds (the cache
        uses it so that its fail-open bound holds for lock calls too)."""
        twin = copy.copy(self)
        twin.clients = [redlock_async_client(c, timeout) for c in self._sources]
        return twin

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _keys(self, name: str) -> list[str]:
        key = self._key(name)
        return [key, key + ":fence", self.prefix + "fleetcache:redlock:boot"]

    async def _attempt(self, name: str, ttl: float) -> Attempt:
        """One round: grant on a majority, settle the fence, or release everywhere."""
        token = new_token()
        start = time.monotonic()
        keys = self._keys(name)
        counter_ttl = ttl_ms(max(self.counter_ttl, ttl))
        raw = await fan_out_async(
            self.clients, ACQUIRE, keys,
            [token, ttl_ms(ttl), counter_ttl, math.ceil(self.restart_delay * 1000),
             ttl_ms(max(COUNTER_TTL, self.counter_ttl))],
        )
        replies = [parse_acquire(x) for x in raw]
        attempt = Attempt(
            granted=[i for i, r in enumerate(replies) if r.granted],
            errors={i: r.error for i, r in enumerate(replies) if r.error is not None},
        )
        if len(attempt.granted) >= self.quorum:
            fence = await self._settle_fence(keys[1], replies, counter_ttl)
            valid = validity(ttl, time.monotonic() - start)
            if fence is not None and valid > 0:
                attempt.lease = Lease(name, token, fence, start + valid)
                return attempt
        await fan_out_async(self.clients, RELEASE, keys[:1], [token])
        return attempt

    async def _settle_fence(
        self, fence_key: str, replies: Sequence[NodeReply], counter_ttl: int
    ) -> int | None:
        """The fence to hand out, written back to a majority first when counters diverged."""
        fence, write_back = fence_for(replies)
        if not write_back:
            return fence
        acks = await fan_out_async(self.clients, RAISE_FENCE, [fence_key], [fence, counter_ttl])
        return fence if count_at_least(acks, fence) >= self.quorum else None

    async def try_acquire(self, name: str, ttl: float) -> Lease | None:
        """One round; None when no quorum granted (it is then released everywhere)."""
        check_name(name)
        check_seconds("ttl", ttl)
        return (await self._attempt(name, ttl)).lease

    async def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        """Rounds with random exponential jitter until a quorum grants or ``wait`` is over.

        Raises :class:`QuorumNotReached` with the last round's granting nodes and errors.
        """
        check_name(name)
        check_seconds("ttl", ttl)
        check_seconds("wait", wait, allow_zero=True)
        start = time.monotonic()
        last = await self._attempt(name, ttl)
        if last.lease is not None:  # the common case: no retry machinery to build
            return last.lease
        retrying = AsyncRetrying(
            stop=stop_before_delay(wait),
            wait=wait_random_exponential(multiplier=self.retry_min, max=self.retry_max),
            retry=retry_if_result(lambda a: a.lease is None),
            reraise=True,
        )
        try:
            last = await retrying(self._attempt, name, ttl)
        except RetryError as exc:
            last = exc.last_attempt.result()
        if last.lease is None:
            raise QuorumNotReached(
                name, time.monotonic() - start, last.granted, self.quorum, last.errors
            )
        return last.lease

    async def extend(self, lease: Lease, ttl: float) -> Lease:
        """Extend on every node; LockLost unless a quorum still held the lease."""
        check_lease(lease)
        check_seconds("ttl", ttl)
        start = time.monotonic()
        replies = await fan_out_async(
            self.clients, EXTEND, [self._key(lease.name)], [lease.token, ttl_ms(ttl)]
        )
        valid = validity(ttl, time.monotonic() - start)
        if count_true(replies) < self.quorum or valid <= 0:
            raise LockLost(lease.name, f"extended on fewer than {self.quorum} nodes")
        return lease.renewed(start + valid)

    async def release(self, lease: Lease) -> bool:
        """Release on every node; True when a quorum still held the lease."""
        check_lease(lease)
        replies = await fan_out_async(
            self.clients, RELEASE, [self._key(lease.name)], [lease.token]
        )
        return count_true(replies) >= self.quorum
