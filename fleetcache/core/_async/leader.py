"""AsyncLeader: what the one caller fleet-wide that holds an entry's lease does.

This asyncio module is the source; ``_sync/leader.py`` is generated from it.  Holding the
lease, the leader claims the entry (double-check and fence, ARCHITECTURE §4), runs
``compute``, writes the value fenced (or records the failure, fenced too), then releases
the lease — waking the followers when it leaves without a value — all while a watchdog
renews the lease (ARCHITECTURE §3).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fleetcache.core import envelope, failures, freshness
from fleetcache.core._async.binding import AsyncBinding
from fleetcache.core._async.store import REFUSED, UNPUBLISHED
from fleetcache.core.call import AsyncComputeCall
from fleetcache.core.clock import Clock
from fleetcache.core.keys import EntryKeys, KeyLayout
from fleetcache.core.policy import Policy
from fleetcache.core.runtime import checkpoint_async
from fleetcache.core.stats import UPSTREAM_SECONDS, Stats
from fleetcache.core.throttle import Throttle
from fleetcache.errors import BackendError, CodecError, FleetcacheError
from fleetcache.locking.async_watchdog import AsyncWatchdog
from fleetcache.locking.lease import Lease

log = logging.getLogger("fleetcache")

#: How long a failure or hand-off record lives (a new leader deletes a failure at once).
RECORD_TTL = 10.0


def fence_ttl_ms(policy: Policy) -> int:
    """How long the fence a leader claims lives: a superseded leader may come back as late
    as the longest a compute is renewed, or the entry lives."""
    hold = policy.max_hold if policy.max_hold is not None else policy.wait_timeout
    return ms(max(policy.ttl + policy.stale_ttl, policy.lock_ttl, hold))


def ms(seconds: float) -> int:
    """Seconds as whole milliseconds, at least 1 (for PX arguments)."""
    return max(1, math.ceil(seconds * 1000))


def decode_entry(stats: Stats, key: str, raw: Any) -> envelope.Envelope | None:
    """The envelope in ``raw``; None when there is none or it is corrupt (a counted miss)."""
    if raw is None:
        return None
    try:
        return envelope.decode(raw)
    except CodecError as exc:
        stats.incr("codec_errors")
        log.warning("corrupt entry %s treated as a miss: %s", key, exc)
        return None


class AsyncLeader:
    """Runs leaderships for one cache, and its writes."""

    def __init__(self, stats: Stats, clock: Clock, layout: KeyLayout, refusals: Throttle) -> None:
        self._stats = stats
        self._clock = clock
        self._layout = layout
        self._refusals = refusals

    async def run(  # noqa: PLR0917 - one flow, every argument needed
        self,
        b: AsyncBinding,
        flight: str,
        request: Any,
        keys: EntryKeys,
        lease: Lease,
        call: AsyncComputeCall,
        policy: Policy,
        seen: envelope.Envelope | None = None,
    ) -> Any:
        """Holding ``lease``: claim, compute, write fenced, release (ARCHITECTURE §3).

        ``seen`` is the entry a background refresh replaces (None for a miss): a newer one
        found at the claim means another worker refreshed it already.
        """
        stats = self._stats
        b.leaders.enter()
        dog = AsyncWatchdog(b.lock, lease, policy.lock_ttl, policy.max_hold).start()
        settled = False  # a value is stored, or the followers were told of the outcome
        try:
            raw, fence = await b.store.claim(keys, lease.fence, fence_ttl_ms(policy))
            await checkpoint_async()
            env = decode_entry(stats, keys.value, raw)
            if env is not None and self._still_good(env, seen, policy):
                settled = True
                stats.incr("hits")
                return env.value
            stats.incr("upstream_calls")
            try:
                try:
                    value = await call()
                finally:
                    stats.observe(UPSTREAM_SECONDS, call.seconds)
                keep = policy.cache_if is None or bool(policy.cache_if(request, value))
                now = self._clock.time()
                payload = envelope.encode(
                    envelope.Envelope(now, now + policy.ttl, call.seconds, fence, value)
                )
            except Exception as exc:
                if seen is None:  # a refresh that fails leaves the entry as it is
                    settled = await self._record_failure(b, keys, exc, fence, policy)
                raise
            if dog.lost.is_set() or self._clock.monotonic() > dog.lease.valid_until:
                # Paused or partitioned past the lease: another leader may have claimed the
                # entry since; the write below is then refused (its fence is lower).
                stats.incr("leases_lost")
            if keep:
                await self.store(b, keys, payload, fence, freshness.key_ttl(now, now, policy),
                                 policy)
                settled = True
            else:
                stats.incr("not_cached")
                if seen is None:
                    settled = await self._hand_off(b, keys, payload, fence)
            b.flights.settle(flight, value)  # this process's waiters need not wait more
            return value
        finally:
            latest = await dog.stop()
            try:
                released = await b.lock.release(latest)
                if released and not settled:
                    # Abandoned (cancelled, interrupted, Redis failing mid-way): wake the
                    # followers so that one takes over now rather than at its next poll.
                    await b.store.wake(keys.value)
            except FleetcacheError as exc:
                log.warning("releasing %s failed (it will expire): %s", keys.lock, exc)
            finally:
                b.leaders.leave()

    def _still_good(
        self, env: envelope.Envelope, seen: envelope.Envelope | None, policy: Policy
    ) -> bool:
        """At the claim: may the entry found be returned instead of computing?"""
        if seen is not None:  # a refresh: only when someone else wrote a newer one
            return env.created > seen.created
        verdict = freshness.plain_verdict(env.created, env.fresh_until, self._clock.time(),
                                          policy)
        return verdict is freshness.Verdict.FRESH

    async def store(  # noqa: PLR0917 - the write's whole context
        self, b: AsyncBinding, keys: EntryKeys, payload: bytes, fence: int | None, ttl: float,
        policy: Policy | None = None,
    ) -> bool:
        """Write an entry for ``ttl`` seconds (fenced unless ``fence`` is None); False when
        the fence lost.  With ``policy.replica_acks``, wait for that many replicas."""
        acks = 0 if policy is None else policy.replica_acks
        if acks:
            assert policy is not None
            result, acked = await b.store.write_acked(
                keys, payload, ms(ttl), fence, acks, ms(policy.replica_ack_timeout))
            if result != REFUSED and acked < acks:
                self._stats.incr("replica_ack_shortfalls")
                if self._refusals.allow("replica_acks"):
                    log.warning("write of %s acknowledged by %d replica(s) of the %d wanted "
                                "within %.3fs", keys.value, acked, acks,
                                policy.replica_ack_timeout)
        else:
            result = await b.store.write(keys, payload, ms(ttl), fence)
        if result == REFUSED:
            self._stats.incr("writes_refused")
            log.info("write of %s refused: a newer leader (fence > %s) claimed it",
                     keys.value, fence)
            return False
        if result == UNPUBLISHED:
            self._publish_refused()
        return True

    async def _hand_off(
        self, b: AsyncBinding, keys: EntryKeys, payload: bytes, fence: int
    ) -> bool:
        """Give a value cache_if refused to this computation's followers (a 10 s record,
        never the entry); True when they were told."""
        return await self._tell_followers(
            keys, "hand the value over",
            lambda: b.store.handoff(keys, payload, ms(RECORD_TTL), fence),
        )

    async def _record_failure(
        self, b: AsyncBinding, keys: EntryKeys, exc: Exception, fence: int, policy: Policy
    ) -> bool:
        """Tell the followers the leader failed; True when they were told."""
        record = failures.encode(exc, policy.share_error_message)
        return await self._tell_followers(
            keys, "record the failure", lambda: b.store.fail(keys, record, ms(RECORD_TTL), fence)
        )

    async def _tell_followers(
        self, keys: EntryKeys, what: str, send: Callable[[], Awaitable[int]]
    ) -> bool:
        try:
            result = await send()
        except BackendError as err:
            log.warning("could not %s of %s: %s", what, keys.value, err)
            return False
        if result == UNPUBLISHED:
            self._publish_refused()
        return result != REFUSED

    def _publish_refused(self) -> None:
        self._stats.incr("notify_refused")
        if self._refusals.allow("PUBLISH"):
            channel = self._layout.channel
            log.warning(
                "Redis refused PUBLISH on %s (an ACL without channel permission): entries are "
                "stored, but followers in other processes poll instead of being woken; allow "
                "the channel for this Redis user, e.g. ACL SETUSER <user> &%s",
                channel, channel,
            )
