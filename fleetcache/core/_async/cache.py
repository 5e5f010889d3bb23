"""AsyncCache: the cache and its fleet-wide single-flight flow (DESIGN §3).

This asyncio module is the one source of the flow; ``fleetcache/core/_sync/cache.py``
(:class:`fleetcache.Cache`) is generated from it by ``scripts/unasync.py``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import orjson
from redis import asyncio as aioredis

from fleetcache.backend import (
    REDIS_ERRORS,
    bounded_async_client,
    map_redis_errors,
    register_async,
)
from fleetcache.core import envelope
from fleetcache.core.async_notifier import AsyncNotifier
from fleetcache.core.breaker import Breaker
from fleetcache.core.call import AsyncComputeCall
from fleetcache.core.checkpoint import checkpoint_async
from fleetcache.core.clock import SYSTEM_CLOCK, Clock
from fleetcache.core.generation import Generation
from fleetcache.core.keys import EntryKeys, KeyLayout, request_hash, validate_namespace
from fleetcache.core.miss import MISS, Missing
from fleetcache.core.policy import Policy
from fleetcache.core.singleflight import AsyncSingleFlight
from fleetcache.core.stats import Stats
from fleetcache.errors import (
    BackendError,
    CodecError,
    FleetcacheError,
    LeaderFailed,
    WaitTimeout,
)
from fleetcache.locking._async.base import AsyncLock
from fleetcache.locking._async.setnx import AsyncSetNxLock
from fleetcache.locking.async_watchdog import AsyncWatchdog
from fleetcache.locking.lease import Lease

log = logging.getLogger("fleetcache")

_PKG = "fleetcache.core"
#: How long a failed leader's error record lives (a new leader deletes it at once).
ERROR_RECORD_TTL = 10.0
#: Entries up to this size ride along with the ready notification (followers skip a GET).
INLINE_MAX = 16 * 1024
#: Minimum TTL of the namespace generation key (refreshed whenever a process connects).
GENERATION_TTL = 30 * 86400.0
_LOCK_METHODS = ("try_acquire", "extend", "release")


class AsyncCache:
    """A Redis cache of expensive calls with one upstream call per key, fleet-wide.

    ``client`` is a :class:`redis.asyncio.Redis`; unless ``policy.redis_timeout`` is None
    the cache opens its own connection pool with that client's connection settings and
    bounded timeouts.  ``lock`` defaults to an AsyncSetNxLock on that pool.
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
        self._redis = bounded_async_client(client, policy.redis_timeout)
        self._owns_pool = self._redis is not client
        self.lock: AsyncLock = lock if lock is not None else AsyncSetNxLock(self._redis)
        self._flights = AsyncSingleFlight()
        self._breaker = Breaker(policy.retry_backoff, policy.retry_backoff_max, clock)
        self._gen = Generation()
        self._notifier = AsyncNotifier(
            self._redis, self._layout.channel, self._refresh_generation, self._gen.adopt
        )
        self._claim = register_async(self._redis, _PKG, "claim")
        self._write = register_async(self._redis, _PKG, "write")
        self._fail = register_async(self._redis, _PKG, "fail")
        self._ensure_gen = register_async(self._redis, _PKG, "ensure_gen")
        self._invalidate = register_async(self._redis, _PKG, "invalidate")
        self._gen_ttl_ms = int(max(GENERATION_TTL, 2 * policy.ttl) * 1000)

    # ------------------------------------------------------------------ public API

    async def get(self, request: Any) -> Any:
        """The cached value for ``request``, or :data:`~fleetcache.MISS`.

        One round trip.  Fail-open: with Redis failing, a MISS (``policy.fail_open``) or
        BackendError.
        """
        digest = request_hash(request)
        if not self._breaker.allow():
            return self._fallback()
        try:
            env = await self._lookup(digest)
        except BackendError as exc:
            self._failed(exc)
            return self._fallback()
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
        try:
            return await self._store(await self._keys(digest), payload, None)
        except BackendError as exc:
            self._failed(exc)
            self._fallback()
            return False

    async def delete(self, request: Any) -> bool:
        """Delete the entry for ``request``; True if there was one."""
        digest = request_hash(request)
        try:
            keys = await self._keys(digest)
            with map_redis_errors("delete"):
                return bool(await self._redis.delete(keys.value, keys.fence, keys.error))
        except BackendError as exc:
            self._failed(exc)
            self._fallback()
            return False

    async def invalidate(self) -> int:
        """Make every entry of this namespace unreachable, fleet-wide, in O(1).

        The namespace moves to a new generation; every process learns it through pub/sub
        (or, while its subscription is down, by reading the generation on each call).  Old
        entries expire by their TTL.  Returns the new generation.  Raises BackendError when
        Redis is unreachable: an invalidation must not fail silently.
        """
        with map_redis_errors("invalidate"):
            gen = int(
                await self._invalidate(
                    keys=[self._layout.gen], args=[self._gen_ttl_ms, self._layout.channel]
                )
            )
        self._gen.adopt(gen)
        return gen

    async def get_or_set(self, request: Any, compute: Callable[[], Any]) -> Any:
        """The cached value for ``request``, computing it with ``compute()`` on a miss.

        Exactly one ``compute`` runs fleet-wide for concurrent misses of one request; see
        the README for what followers get when it raises.
        """
        if not callable(compute):
            raise TypeError(f"compute must be callable, not {type(compute).__name__}")
        digest = request_hash(request)
        looked = False
        if self._breaker.allow():  # the hit path: one GET, no single-flight bookkeeping
            try:
                env = await self._lookup(digest)
            except BackendError as exc:
                self._failed(exc)
            else:
                self._breaker.success()
                if env is not None:
                    self.stats.incr("hits")
                    return env.value
                self.stats.incr("misses")
                looked = True
        value, shared = await self._flights.run(
            digest, lambda: self._resolve(digest, compute, looked), self.policy.wait_timeout
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
        return self._notifier.healthy

    async def close(self) -> None:
        """Stop the background subscription and close the cache's own connections.

        The client you passed stays open (it is yours); the pool the cache opened with
        bounded timeouts is closed.
        """
        await self._notifier.stop()
        if self._owns_pool:
            await self._redis.connection_pool.disconnect()

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ generation

    async def _refresh_generation(self) -> None:
        with map_redis_errors("reading the namespace generation"):
            gen = await self._ensure_gen(
                keys=[self._layout.gen], args=[self._gen_ttl_ms, self._layout.channel]
            )
        self._gen.adopt(int(gen))

    async def _keys(self, digest: str) -> EntryKeys:
        """Entry keys in the current generation (cached while subscribed, else read)."""
        if not self._notifier.healthy:
            timeout = self.policy.redis_timeout or 1.0
            if not await self._notifier.start(timeout):
                await self._refresh_generation()
        gen = self._gen.value
        if gen is None:
            await self._refresh_generation()
            gen = self._gen.value
        assert gen is not None
        return self._layout.entry(digest, gen)

    # ------------------------------------------------------------------ the flow

    def _failed(self, exc: BackendError) -> None:
        """Redis failed: open the breaker; re-raise unless the policy fails open."""
        self.stats.incr("backend_errors")
        delay = self._breaker.failure()
        log.warning("Redis unavailable (%s); skipping it for %.2fs", exc, delay)
        if not self.policy.fail_open:
            raise exc

    def _fallback(self) -> Missing:
        """Answer without Redis (fail-open), or raise BackendError when failing closed."""
        if not self.policy.fail_open:
            raise BackendError("Redis unavailable (recent failures; retrying soon)")
        self.stats.incr("fail_open")
        return MISS

    async def _lookup(self, digest: str) -> envelope.Envelope | None:
        """The hit path: one GET of the entry in the current generation."""
        gen = self._gen.value
        if gen is None or not self._notifier.healthy:
            key = (await self._keys(digest)).value
        else:
            key = self._layout.value_key(digest, gen)
        try:
            raw = await self._redis.get(key)
        except REDIS_ERRORS as exc:
            raise BackendError(f"GET: {type(exc).__name__}: {exc}") from exc
        return self._decode(key, raw)

    async def _resolve(self, digest: str, compute: Callable[[], Any], looked: bool) -> Any:
        """Run by one caller per process for a missing key: Redis flow, or fail open."""
        call = AsyncComputeCall(compute)
        if self._breaker.allow():
            try:
                value = await self._resolve_with_redis(digest, call, looked)
                self._breaker.success()
                return value
            except BackendError as exc:
                self._failed(exc)
        self._fallback()
        if not call.ran:
            self.stats.incr("upstream_calls")
        return await call()

    def _decode(self, key: str, raw: Any) -> envelope.Envelope | None:
        if raw is None:
            return None
        try:
            return envelope.decode(raw)
        except CodecError as exc:
            self.stats.incr("codec_errors")
            log.warning("corrupt entry %s treated as a miss: %s", key, exc)
            return None

    async def _resolve_with_redis(
        self, digest: str, call: AsyncComputeCall, looked: bool
    ) -> Any:
        if not looked:  # the caller's own look failed or was skipped: look now
            env = await self._lookup(digest)
            if env is not None:
                self.stats.incr("hits")
                return env.value
            self.stats.incr("misses")
        return await self._fill(digest, await self._keys(digest), call)

    async def _fill(self, digest: str, keys: EntryKeys, call: AsyncComputeCall) -> Any:
        """Become the leader, or follow the leader until its value appears."""
        lease = await self.lock.try_acquire(keys.lock, self.policy.lock_ttl)
        if lease is not None:
            return await self._lead(digest, keys, lease, call)
        await checkpoint_async()
        start = self._clock.monotonic()
        deadline = start + self.policy.wait_timeout
        poll = self.policy.effective_poll_interval
        # The first re-try comes soon: with a quorum lock (Redlock) simultaneous attempts
        # can split the vote so that nobody leads; later ones wait the fallback poll.
        pause = random.uniform(0.002, 0.02)
        with self._notifier.waiter(keys.value) as waiter:
            env = await self._peek(keys)
            await checkpoint_async()
            while env is None:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    self.stats.incr("wait_timeouts")
                    raise WaitTimeout(keys.value, self._clock.monotonic() - start)
                # Woken by the leader's notification, or by the jittered fallback poll.
                await waiter.wait(min(remaining, pause))
                await checkpoint_async()
                pause = random.uniform(poll / 2, poll)
                inline = waiter.take()
                env = None if inline is None else self._decode(keys.value, inline)
                if env is None:
                    env = await self._peek(keys)
                    await checkpoint_async()
                if env is None:  # no value yet: the leader may be gone (expired, abandoned)
                    lease = await self.lock.try_acquire(keys.lock, self.policy.lock_ttl)
                    await checkpoint_async()
                    if lease is not None:
                        self.stats.incr("takeovers")
                        return await self._lead(digest, keys, lease, call)
        self.stats.incr("followed")
        return env.value

    async def _peek(self, keys: EntryKeys) -> envelope.Envelope | None:
        """A follower's look: the entry, None, or LeaderFailed when the leader raised."""
        with map_redis_errors("MGET"):
            raw, err = await self._redis.mget(keys.value, keys.error)
        env = self._decode(keys.value, raw)
        if env is None and err is not None:
            self.stats.incr("leader_failures")
            raise self._leader_failed(keys.value, err)
        return env

    async def _lead(
        self, digest: str, keys: EntryKeys, lease: Lease, call: AsyncComputeCall
    ) -> Any:
        """Holding the lease: double-check, compute, write (fenced), release."""
        policy = self.policy
        dog = AsyncWatchdog(self.lock, lease, policy.lock_ttl, policy.max_hold).start()
        settled = False  # a value is stored, or the followers were told of a failure
        try:
            with map_redis_errors("claim"):
                raw = await self._claim(keys=[keys.value, keys.error])
            await checkpoint_async()
            env = self._decode(keys.value, raw)
            if env is not None:
                settled = True
                self.stats.incr("hits")
                return env.value
            self.stats.incr("upstream_calls")
            try:
                value = await call()
                now = self._clock.time()
                payload = envelope.encode(
                    envelope.Envelope(now, now + policy.ttl, call.seconds, lease.fence, value)
                )
            except Exception as exc:
                settled = True
                await self._record_failure(keys, exc)
                raise
            if dog.lost.is_set() or self._clock.monotonic() > dog.lease.valid_until:
                # Paused or partitioned past the lease: another leader may have written.
                # The write below is fenced (when the lock gives fences) and may be refused.
                self.stats.incr("leases_lost")
            await self._store(keys, payload, dog.lease.fence)
            settled = True
            self._flights.settle(digest, value)  # this process's waiters need not wait more
            return value
        finally:
            latest = await dog.stop()
            try:
                released = await self.lock.release(latest)
                if released and not settled:
                    # Abandoned (cancelled, interrupted, Redis failing mid-way): wake the
                    # followers so that one takes over now rather than at its next poll.
                    with map_redis_errors("publish"):
                        await self._redis.publish(
                            self._layout.channel, b"r|" + keys.value.encode()
                        )
            except FleetcacheError as exc:
                log.warning("releasing %s failed (it will expire): %s", keys.lock, exc)

    async def _store(self, keys: EntryKeys, payload: bytes, fence: int | None) -> bool:
        with map_redis_errors("write"):
            written = await self._write(
                keys=[keys.value, keys.fence],
                args=[
                    payload,
                    max(1, int(self.policy.ttl * 1000)),
                    self._layout.channel,
                    b"r|" + keys.value.encode()
                    + (b"|" + payload if len(payload) <= INLINE_MAX else b""),
                    "" if fence is None else str(fence),
                ],
            )
        if not written:
            self.stats.incr("writes_refused")
            log.info("write of %s refused: a newer leader (fence > %s) wrote", keys.value, fence)
        return bool(written)

    async def _record_failure(self, keys: EntryKeys, exc: Exception) -> None:
        record = orjson.dumps(
            {"t": f"{type(exc).__module__}.{type(exc).__qualname__}", "m": str(exc)[:2000]}
        )
        try:
            with map_redis_errors("recording a leader failure"):
                await self._fail(
                    keys=[keys.error],
                    args=[
                        record,
                        int(ERROR_RECORD_TTL * 1000),
                        self._layout.channel,
                        b"e|" + keys.value.encode(),
                    ],
                )
        except BackendError as err:
            log.warning("could not record the failure of %s: %s", keys.value, err)

    @staticmethod
    def _leader_failed(key: str, raw: bytes | str) -> LeaderFailed:
        try:
            record = orjson.loads(raw)
            return LeaderFailed(key, str(record["t"]), str(record["m"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return LeaderFailed(key, "unknown", repr(raw[:200]))
