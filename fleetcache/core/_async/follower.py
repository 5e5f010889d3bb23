"""AsyncFollower: a miss whose lease another worker holds waits for that worker's result.

This asyncio module is the source; ``_sync/follower.py`` is generated from it.  The
follower registers for the entry's notification before it looks again (so no wake-up is
lost), waits for a wake-up or its jittered poll, and reads Redis — a message is never
data (ARCHITECTURE §9).  It returns the entry, a value the leader handed over without
storing it (cache_if), or raises LeaderFailed; when neither comes and the lease is free,
it leads itself (ARCHITECTURE §3).
"""

from __future__ import annotations

import random
from typing import Any

from fleetcache.core import envelope, failures, freshness
from fleetcache.core._async.binding import AsyncBinding
from fleetcache.core._async.leader import AsyncLeader, decode_entry
from fleetcache.core.call import AsyncComputeCall
from fleetcache.core.clock import Clock
from fleetcache.core.keys import EntryKeys
from fleetcache.core.policy import Policy
from fleetcache.core.runtime import checkpoint_async
from fleetcache.core.stats import FOLLOWER_WAIT_SECONDS, Stats
from fleetcache.errors import LeaderFailed, WaitTimeout

_GONE = (freshness.Verdict.EXPIRED, freshness.Verdict.TOO_OLD)


class AsyncFollower:
    """Follows other workers' leaderships for one cache."""

    def __init__(self, stats: Stats, clock: Clock, leader: AsyncLeader) -> None:
        self._stats = stats
        self._clock = clock
        self._leader = leader

    async def fill(  # noqa: PLR0917 - one flow, every argument needed
        self,
        b: AsyncBinding,
        flight: str,
        request: Any,
        keys: EntryKeys,
        call: AsyncComputeCall,
        policy: Policy,
    ) -> Any:
        """Become the leader, or follow the leader until its value appears."""
        lease = await b.lock.try_acquire(keys.lock, policy.lock_ttl)
        if lease is not None:
            return await self._leader.run(b, flight, request, keys, lease, call, policy)
        await checkpoint_async()
        stats, clock = self._stats, self._clock
        start = clock.monotonic()
        deadline = start + policy.wait_timeout
        poll = policy.effective_poll_interval
        # Subscribed before registering, so that no notification is lost; bounded, and
        # not at all while the subscription is failing (the poll below covers it).
        await b.notifier.wait_healthy(min(policy.redis_timeout or 1.0, poll * 2))
        # The first re-try comes soon: with a quorum lock (Redlock) simultaneous attempts
        # can split the vote so that nobody leads; later ones wait the fallback poll.
        pause = random.uniform(0.002, 0.02)
        with b.notifier.waiter(keys.value) as waiter:
            # On Redis Cluster: subscribed to the entry's shard channel (ARCHITECTURE §14)
            async with b.shards.watching(keys.value):
                found, floor = await self._peek(b, keys, policy, None)
                await checkpoint_async()
                while found is None:
                    remaining = deadline - clock.monotonic()
                    if remaining <= 0:
                        stats.incr("wait_timeouts")
                        raise WaitTimeout(keys.value, clock.monotonic() - start)
                    # Woken by a notification, or by the jittered fallback poll.  A message is
                    # only a wake-up: the value is always read from Redis (ARCHITECTURE §9).
                    await waiter.wait(min(remaining, pause))
                    await checkpoint_async()
                    pause = random.uniform(poll / 2, poll)
                    found, _ = await self._peek(b, keys, policy, floor)
                    await checkpoint_async()
                    if found is None:  # no value yet: the leader may be gone (expired, abandoned)
                        lease = await b.lock.try_acquire(keys.lock, policy.lock_ttl)
                        await checkpoint_async()
                        if lease is not None:
                            stats.incr("takeovers")
                            return await self._leader.run(b, flight, request, keys, lease, call,
                                                          policy)
        stats.incr("followed")
        stats.observe(FOLLOWER_WAIT_SECONDS, clock.monotonic() - start)
        return found.value

    async def _peek(
        self, b: AsyncBinding, keys: EntryKeys, policy: Policy, floor: int | None
    ) -> tuple[envelope.Envelope | None, int]:
        """One look: the entry (or a value handed over by a leader at least as new as
        ``floor``, the fence claimed at the first look), and the fence claimed now.

        Raises LeaderFailed when the leader recorded a failure.
        """
        raw, err, handoff, fence_raw = await b.store.peek(keys)
        fence = int(fence_raw) if fence_raw is not None else 0
        floor = fence if floor is None else floor
        env = decode_entry(self._stats, keys.value, raw)
        if env is not None and self._servable(env, policy):
            return env, fence
        handed = decode_entry(self._stats, keys.handoff, handoff)
        if handed is not None and (handed.fence or 0) >= floor:
            return handed, fence
        if err is not None:
            self._stats.incr("leader_failures")
            exc_type, message = failures.decode(err)
            raise LeaderFailed(keys.value, exc_type, message)
        return None, fence

    def _servable(self, env: envelope.Envelope, policy: Policy) -> bool:
        verdict = freshness.plain_verdict(env.created, env.fresh_until, self._clock.time(),
                                          policy)
        return verdict not in _GONE
