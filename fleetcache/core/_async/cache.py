"""AsyncCache: the cache and its fleet-wide single-flight flow (ARCHITECTURE §3).

This asyncio module is the one source of the flow; ``fleetcache/core/_sync/cache.py``
(:class:`fleetcache.Cache`) is generated from it by ``scripts/unasync.py``.  Beside it:
``store.py`` (every command and script sent to Redis), ``leader.py`` (what the lease holder
does), ``generations.py`` (the namespace generation) and ``binding.py`` (what belongs to
one event loop).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis

from fleetcache.core import envelope, failures, forksafe
from fleetcache.core._async.binding import AsyncBinding, bind_async
from fleetcache.core._async.generations import AsyncGenerations
from fleetcache.core._async.leader import AsyncLeader, decode_entry, ms
from fleetcache.core.breaker import Breaker
from fleetcache.core.call import AsyncComputeCall
from fleetcache.core.clock import SYSTEM_CLOCK, Clock
from fleetcache.core.keys import EntryKeys, KeyLayout, request_hash, validate_namespace
from fleetcache.core.miss import MISS, Missing
from fleetcache.core.policy import Policy
from fleetcache.core.runtime import checkpoint_async, current_loop_async
from fleetcache.core.stats import Stats
from fleetcache.core.throttle import Throttle
from fleetcache.errors import BackendError, CommandRefused, LeaderFailed, WaitTimeout
from fleetcache.locking._async.base import AsyncLock

log = logging.getLogger("fleetcache")

#: Minimum TTL of the namespace generation key (refreshed whenever a process connects).
GENERATION_TTL = 30 * 86400.0
_LOCK_METHODS = ("try_acquire", "extend", "release")


class AsyncCache:
    """A Redis cache of expensive calls with one upstream call per key, fleet-wide.

    ``client`` is a :class:`redis.asyncio.Redis`; unless ``policy.redis_timeout`` is None
    the cache opens its own connection pool (at most ``policy.max_connections``) with that
    client's connection settings and bounded timeouts.  ``lock`` defaults to an
    :class:`~fleetcache.locking.AsyncFencedLock` on that pool; a lock of ours built on
    another client is copied onto a pool bounded the same way (ARCHITECTURE §8).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str = "default",
        lock: AsyncLock | None = None,
        policy: Policy | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not isinstance(client, aioredis.Redis):
            raise TypeError(
                f"AsyncCache needs a redis.asyncio.Redis client, not {type(client).__name__}"
            )
        if policy is None:
            policy = Policy()
        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a fleetcache.Policy, not {type(policy).__name__}")
        if lock is not None and not all(callable(getattr(lock, m, None)) for m in _LOCK_METHODS):
            raise TypeError(f"lock must be a fleetcache lock backend, not {type(lock).__name__}")
        self.namespace = validate_namespace(namespace)
        self.policy = policy
        self.stats = Stats()
        self._clock = clock
        self._layout = KeyLayout(self.namespace)
        self._client = client
        self._lock_source = lock
        timeout = policy.redis_timeout or 1.0
        self._breaker = Breaker(
            policy.retry_backoff, policy.retry_backoff_max, clock, probe_timeout=3 * timeout
        )
        self._gen = AsyncGenerations(clock, policy.retry_backoff)
        self._gen_ttl_ms = ms(max(GENERATION_TTL, 2 * policy.ttl))
        self._refusals = Throttle(60.0)
        self._leader = AsyncLeader(policy, self.stats, clock, self._layout, self._refusals)
        self._bind_guard = threading.Lock()
        self._binding: AsyncBinding = self._bind(current_loop_async())
        forksafe.register(self)

    # ------------------------------------------------------------------ public API

    async def get(self, request: Any) -> Any:
        """The cached value for ``request``, or :data:`~fleetcache.MISS`.

        One round trip.  Fail-open: with Redis failing, a MISS (``policy.fail_open``) or
        BackendError.
        """
        digest = request_hash(request)
        b = self._bound()
        if not self._breaker.allow():
            return self._skipped()
        try:
            env = await self._lookup(b, digest)
        except BackendError as exc:
            self._degraded(exc)
            return MISS
        self._breaker.success()
        if env is None:
            self.stats.incr("misses")
            return MISS
        self.stats.incr("hits")
        return env.value

    async def set(self, request: Any, value: Any) -> bool:
        """Store ``value`` for ``request`` (unfenced); True when written.

        Raises TypeError before writing anything when either is not JSON data.  Fail-open:
        with Redis failing, False (``policy.fail_open``) or BackendError.
        """
        digest = request_hash(request)
        now = self._clock.time()
        payload = envelope.encode(envelope.Envelope(now, now + self.policy.ttl, 0.0, None, value))
        b = self._bound()
        if not self._breaker.allow():
            self._skipped()
            return False
        try:
            written = await self._leader.store(b, await self._keys(b, digest), payload, None)
        except BackendError as exc:
            self._degraded(exc)
            return False
        self._breaker.success()
        return written

    async def delete(self, request: Any) -> bool:
        """Delete the entry for ``request``; True if there was one."""
        digest = request_hash(request)
        b = self._bound()
        if not self._breaker.allow():
            self._skipped()
            return False
        try:
            deleted = await b.store.delete(await self._keys(b, digest))
        except BackendError as exc:
            self._degraded(exc)
            return False
        self._breaker.success()
        return deleted

    async def invalidate(self) -> int:
        """Make every entry of this namespace unreachable, fleet-wide, in O(1).

        The namespace moves to a new generation, newer than any this process has seen;
        every process learns it through pub/sub (or, while its subscription is down, within
        ``policy.retry_backoff``).  Old entries expire by their TTL; calls of this process
        that start afterwards never join a computation of the old generation.  Returns the
        new generation.  Raises BackendError when Redis fails: an invalidation must not
        fail silently.
        """
        return await self._gen.invalidate(self._bound().store)

    async def get_or_set(self, request: Any, compute: Callable[[], Any]) -> Any:
        """The cached value for ``request``, computing it with ``compute()`` on a miss.

        Exactly one ``compute`` runs fleet-wide for concurrent misses of one request; see
        the README for what followers get when it raises.
        """
        if not callable(compute):
            raise TypeError(f"compute must be callable, not {type(compute).__name__}")
        digest = request_hash(request)
        b = self._bound()
        looked = False
        if self._breaker.allow():  # the hit path: one GET, no single-flight bookkeeping
            try:
                env = await self._lookup(b, digest)
            except BackendError as exc:
                self._degraded(exc)
            else:
                self._breaker.success()
                if env is not None:
                    self.stats.incr("hits")
                    return env.value
                self.stats.incr("misses")
                looked = True
        flight = self._flight_key(digest)
        value, shared = await b.flights.run(
            flight,
            lambda: self._resolve(b, flight, digest, compute, looked),
            self.policy.wait_timeout,
        )
        if shared:
            self.stats.incr("coalesced")
        return value

    @property
    def generation(self) -> int | None:
        """The namespace generation this cache currently uses (None before first use)."""
        return self._gen.value

    @property
    def subscribed(self) -> bool:
        """True while the cache's pub/sub subscription is up (notifications arrive)."""
        return self._binding.notifier.healthy

    @property
    def lock(self) -> AsyncLock:
        """The lock backend the cache's leaders use (bounded by the cache's timeouts)."""
        return self._binding.lock

    async def close(self, timeout: float | None = None) -> None:
        """Wait for this cache's leaders to release, then stop the subscription and close
        the cache's own connections.

        Leaders still holding a lease (a cancelled request releasing it, a compute still
        running) get up to ``timeout`` seconds (default: twice ``policy.redis_timeout``, at
        least 1 s) to release it and wake their followers first.  The client you passed
        stays open (it is yours).  A closed cache reconnects if it is used again.
        """
        b = self._binding
        if b.loop is not current_loop_async():
            # Bound to an event loop that is gone: nothing of it can be awaited here.
            with self._bind_guard:
                self._binding = self._bind(current_loop_async())
            return
        bound = timeout if timeout is not None else max(1.0, 2 * (self.policy.redis_timeout or 1))
        if not await b.leaders.wait_idle(bound):
            log.warning(
                "closing cache %r with %d leader(s) still holding a lease (they expire)",
                self.namespace, len(b.leaders),
            )
        await b.notifier.stop()
        for client in b.owned:
            await client.connection_pool.disconnect()

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ binding

    def _bind(self, loop: Any) -> AsyncBinding:
        return bind_async(
            loop,
            self._client,
            self._lock_source,
            self.policy,
            self._layout,
            self._gen_ttl_ms,
            on_connect=lambda b: self._gen.on_subscribed(b.store),
            on_generation=lambda b, hint: self._gen.on_hint(b.store, hint),
            on_bad_message=lambda: self.stats.incr("bad_messages"),
        )

    def _bound(self) -> AsyncBinding:
        """What this cache uses on the current event loop (rebinding on a new loop)."""
        b = self._binding
        loop = current_loop_async()
        if b.loop is loop:
            return b
        with self._bind_guard:
            b = self._binding
            if b.loop is loop:
                return b
            if b.loop is None and not b.forked:  # built outside any loop, never used
                b.loop = loop
                return b
            b.check_rebind(self.namespace)
            self._binding = b = self._bind(loop)
            return b

    def _after_fork(self) -> None:
        """In a forked child: fresh locks and a fresh binding (ARCHITECTURE §10)."""
        self._bind_guard = threading.Lock()
        self.stats._after_fork()
        self._breaker._after_fork()
        self._gen.known._after_fork()
        self._binding.forked = True
        self._binding.loop = self._binding  # matches no loop: the next call rebinds

    def _flight_key(self, digest: str) -> str:
        """The in-process flight of a request: keyed by generation too, so that a call made
        after invalidate() never joins a flight computing the old generation's value."""
        return f"{self._gen.value}:{digest}"

    @property
    def _flights(self) -> Any:
        return self._binding.flights

    @property
    def _notifier(self) -> Any:
        return self._binding.notifier

    # ------------------------------------------------------------------ generation

    async def _keys(self, b: AsyncBinding, digest: str) -> EntryKeys:
        """Entry keys in the current generation."""
        gen = self._gen.value
        if gen is None or not b.notifier.healthy:
            gen = await self._gen.current(b.store, b.notifier)
        return self._layout.entry(digest, gen)

    # ------------------------------------------------------------------ failing Redis

    def _degraded(self, exc: BackendError) -> None:
        """Redis failed this call: count it, open the breaker on an outage, and raise
        unless the policy fails open (the call then goes on without Redis)."""
        if isinstance(exc, CommandRefused):
            self.stats.incr("refused")
            self._breaker.success()  # it answered: reachable
            if self._refusals.allow(exc.reply):
                log.warning("Redis refused a command (%s); going on without it", exc)
        else:
            self.stats.incr("backend_errors")
            self.stats.incr("fail_open")
            delay = self._breaker.failure()
            log.warning("Redis unavailable (%s); skipping it for %.2fs", exc, delay)
        if not self.policy.fail_open:
            raise exc

    def _skipped(self) -> Missing:
        """The breaker is open: answer without Redis, or raise when failing closed."""
        if not self.policy.fail_open:
            raise BackendError("Redis unavailable (recent failures; retrying soon)")
        self.stats.incr("fail_open")
        return MISS

    # ------------------------------------------------------------------ the flow

    async def _lookup(self, b: AsyncBinding, digest: str) -> envelope.Envelope | None:
        """The hit path: one GET of the entry in the current generation."""
        gen = self._gen.value
        if gen is None or not b.notifier.healthy:
            gen = await self._gen.current(b.store, b.notifier)
        key = self._layout.value_key(digest, gen)
        return decode_entry(self.stats, key, await b.store.get(key))

    async def _resolve(
        self,
        b: AsyncBinding,
        flight: str,
        digest: str,
        compute: Callable[[], Any],
        looked: bool,
    ) -> Any:
        """Run by one caller per process for a missing key: Redis flow, or fail open."""
        call = AsyncComputeCall(compute)
        if self._breaker.allow():
            try:
                value = await self._resolve_with_redis(b, flight, digest, call, looked)
            except BackendError as exc:
                self._degraded(exc)
            else:
                self._breaker.success()
                return value
        else:
            self._skipped()
        if not call.ran:
            self.stats.incr("upstream_calls")
        return await call()

    async def _resolve_with_redis(
        self, b: AsyncBinding, flight: str, digest: str, call: AsyncComputeCall, looked: bool
    ) -> Any:
        if not looked:  # the caller's own look failed or was skipped: look now
            env = await self._lookup(b, digest)
            if env is not None:
                self.stats.incr("hits")
                return env.value
            self.stats.incr("misses")
        return await self._fill(b, flight, await self._keys(b, digest), call)

    async def _fill(
        self, b: AsyncBinding, flight: str, keys: EntryKeys, call: AsyncComputeCall
    ) -> Any:
        """Become the leader, or follow the leader until its value appears."""
        lease = await b.lock.try_acquire(keys.lock, self.policy.lock_ttl)
        if lease is not None:
            return await self._leader.run(b, flight, keys, lease, call)
        await checkpoint_async()
        start = self._clock.monotonic()
        deadline = start + self.policy.wait_timeout
        poll = self.policy.effective_poll_interval
        # Subscribed before registering, so that no notification is lost; bounded, and
        # not at all while the subscription is failing (the poll below covers it).
        await b.notifier.wait_healthy(min(self.policy.redis_timeout or 1.0, poll * 2))
        # The first re-try comes soon: with a quorum lock (Redlock) simultaneous attempts
        # can split the vote so that nobody leads; later ones wait the fallback poll.
        pause = random.uniform(0.002, 0.02)
        with b.notifier.waiter(keys.value) as waiter:
            env = await self._peek(b, keys)
            await checkpoint_async()
            while env is None:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    self.stats.incr("wait_timeouts")
                    raise WaitTimeout(keys.value, self._clock.monotonic() - start)
                # Woken by a notification, or by the jittered fallback poll.  A message is
                # only a wake-up: the value is always read from Redis (ARCHITECTURE §9).
                await waiter.wait(min(remaining, pause))
                await checkpoint_async()
                pause = random.uniform(poll / 2, poll)
                env = await self._peek(b, keys)
                await checkpoint_async()
                if env is None:  # no value yet: the leader may be gone (expired, abandoned)
                    lease = await b.lock.try_acquire(keys.lock, self.policy.lock_ttl)
                    await checkpoint_async()
                    if lease is not None:
                        self.stats.incr("takeovers")
                        return await self._leader.run(b, flight, keys, lease, call)
        self.stats.incr("followed")
        return env.value

    async def _peek(self, b: AsyncBinding, keys: EntryKeys) -> envelope.Envelope | None:
        """A follower's look: the entry, None, or LeaderFailed when the leader raised."""
        raw, err = await b.store.peek(keys)
        env = decode_entry(self.stats, keys.value, raw)
        if env is None and err is not None:
            self.stats.incr("leader_failures")
            exc_type, message = failures.decode(err)
            raise LeaderFailed(keys.value, exc_type, message)
        return env
