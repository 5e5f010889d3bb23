"""AsyncCache: the cache and its fleet-wide single-flight flow (ARCHITECTURE §3).

This asyncio module is the one source of the flow; ``fleetcache/core/_sync/cache.py``
(:class:`fleetcache.Cache`) is generated from it by ``scripts/unasync.py``.  Beside it:
``store.py`` (every command and script sent to Redis), ``leader.py`` (what the lease holder
does), ``generations.py`` (the namespace generation) and ``binding.py`` (what belongs to
one event loop).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, cast, overload

from redis import asyncio as aioredis

from fleetcache.clusters import disconnect_async
from fleetcache.core import envelope, forksafe, freshness
from fleetcache.core._async.binding import AsyncBinding, bind_async
from fleetcache.core._async.follower import AsyncFollower
from fleetcache.core._async.generations import AsyncGenerations
from fleetcache.core._async.hits import AsyncHitPath
from fleetcache.core._async.leader import AsyncLeader, ms
from fleetcache.core._async.purge import purge_async
from fleetcache.core._async.refresher import AsyncRefresher
from fleetcache.core.breaker import Breaker
from fleetcache.core.call import AsyncComputeCall
from fleetcache.core.clock import SYSTEM_CLOCK, Clock
from fleetcache.core.failmode import FailMode
from fleetcache.core.keys import EntryKeys, KeyLayout, request_hash, validate_namespace
from fleetcache.core.memoize import (
    AsyncMemoized,
    P,
    R,
    check_kind_async,
    expose,
    memo_policy,
    request_builder,
)
from fleetcache.core.miss import MISS
from fleetcache.core.policy import Policy
from fleetcache.core.runtime import current_loop_async
from fleetcache.core.stats import UPSTREAM_SECONDS, Stats
from fleetcache.core.throttle import Throttle
from fleetcache.errors import BackendError
from fleetcache.locking._async.base import AsyncLock

log = logging.getLogger("fleetcache")


#: Minimum TTL of the namespace generation key (refreshed whenever a process connects).
GENERATION_TTL = 30 * 86400.0
_LOCK_METHODS = ("try_acquire", "extend", "release")


class AsyncCache:
    """A Redis cache of expensive calls with one upstream call per key, fleet-wide.

    ``client`` is a Redis client (``aioredis.Redis``) or a Redis Cluster client
    (``aioredis.RedisCluster``, ARCHITECTURE §14); unless ``policy.redis_timeout`` is None
    the cache opens its own connection pool (at most ``policy.max_connections``) with that
    client's connection settings and bounded timeouts.  ``lock`` defaults to an
    :class:`~fleetcache.locking.AsyncFencedLock` on that pool; a lock of ours built on
    another client is copied onto a pool bounded the same way (ARCHITECTURE §8).
    """

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        namespace: str = "default",
        lock: AsyncLock | None = None,
        policy: Policy | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not isinstance(client, (aioredis.Redis, aioredis.RedisCluster)):
            raise TypeError(
                "AsyncCache needs a redis.asyncio.Redis or redis.asyncio.RedisCluster client, "
                f"not {type(client).__name__}"
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
        self._fail = FailMode(self.stats, self._breaker, self._refusals)
        self._leader = AsyncLeader(self.stats, clock, self._layout, self._refusals)
        self._follower = AsyncFollower(self.stats, clock, self._leader)
        self._refresher = AsyncRefresher(
            self.stats, self._breaker, self._leader, self._keys, self._flight_key
        )
        self._hits = AsyncHitPath(self.stats, clock, self._layout, self._gen)
        self._bind_guard = threading.Lock()
        self._binding: AsyncBinding = self._bind(current_loop_async())
        forksafe.register(self)

    # ------------------------------------------------------------------ public API

    async def get(self, request: Any, *, policy: Policy | None = None) -> Any:
        """The cached value for ``request``, or :data:`~fleetcache.MISS`.

        One round trip.  A stale entry (within ``stale_ttl``) is returned too; ``get``
        has no ``compute`` to refresh it with.  Fail-open: with Redis failing, a MISS
        (``policy.fail_open``) or BackendError.
        """
        policy = self._policy_for(policy)
        digest = request_hash(request)
        b = self._bound()
        if not self._breaker.allow():
            return self._fail.skipped(policy)
        try:
            found = await self._hits.lookup(b, digest, policy)
        except BackendError as exc:
            self._fail.degraded(exc, policy)
            return MISS
        self._breaker.success()
        if found is None:
            self.stats.incr("misses")
            return MISS
        env, verdict = found
        self.stats.incr("hits")
        if verdict is freshness.Verdict.STALE:
            self.stats.incr("stale_served")
        return env.value

    async def set(self, request: Any, value: Any, *, policy: Policy | None = None) -> bool:
        """Store ``value`` for ``request`` (unfenced); True when written.

        Raises TypeError before writing anything when either is not JSON data.  Fail-open:
        with Redis failing, False (``policy.fail_open``) or BackendError.
        """
        policy = self._policy_for(policy)
        digest = request_hash(request)
        now = self._clock.time()
        payload = envelope.encode(envelope.Envelope(now, now + policy.ttl, 0.0, None, value))
        b = self._bound()
        if not self._breaker.allow():
            self._fail.skipped(policy)
            return False
        try:
            keys = await self._keys(b, digest)
            written = await self._leader.store(
                b, keys, payload, None, freshness.key_ttl(now, now, policy), policy
            )
        except BackendError as exc:
            self._fail.degraded(exc, policy)
            return False
        self._breaker.success()
        return written

    async def delete(self, request: Any) -> bool:
        """Delete the entry for ``request``; True if there was one."""
        digest = request_hash(request)
        b = self._bound()
        if not self._breaker.allow():
            self._fail.skipped(self.policy)
            return False
        try:
            deleted = await b.store.delete(await self._keys(b, digest))
        except BackendError as exc:
            self._fail.degraded(exc, self.policy)
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

    async def purge(self, *, batch: int = 500) -> int:
        """Delete now the keys of this namespace's superseded generations; return how many.

        ``SCAN`` + ``UNLINK`` in batches of ``batch`` (never ``KEYS``): the current
        generation's keys are never touched.  Raises BackendError when Redis fails.
        """
        b = self._bound()
        current = await self._gen.read(b.store)
        return await purge_async(b.store.redis, self._layout, current, batch=batch)

    async def get_or_set(
        self, request: Any, compute: Callable[[], Any], *, policy: Policy | None = None
    ) -> Any:
        """The cached value for ``request``, computing it with ``compute()`` on a miss.

        Exactly one ``compute`` runs fleet-wide for concurrent misses of one request; see
        the README for what followers get when it raises.  A stale entry (or one XFetch
        picks for an early refresh) is returned at once while one worker fleet-wide
        refreshes it in the background.  ``policy`` overrides the cache's for this call.
        """
        if not callable(compute):
            raise TypeError(f"compute must be callable, not {type(compute).__name__}")
        policy = self._policy_for(policy)
        digest = request_hash(request)
        b = self._bound()
        looked = False
        if self._breaker.allow():  # the hit path: one round trip, no single-flight
            try:
                found = await self._hits.lookup(b, digest, policy)
            except BackendError as exc:
                self._fail.degraded(exc, policy)
            else:
                self._breaker.success()
                if found is not None:
                    self.stats.incr("hits")
                    env, verdict = found
                    if verdict is not freshness.Verdict.FRESH:
                        self._refresher.later(b, request, digest, env, verdict, compute, policy)
                    return env.value
                self.stats.incr("misses")
                looked = True
        flight = self._flight_key(digest)
        value, shared = await b.flights.run(
            flight,
            lambda: self._resolve(b, flight, request, digest, compute, looked, policy),
            policy.wait_timeout,
        )
        if shared:
            self.stats.incr("coalesced")
        return value

    @overload
    def memoize(self, fn: Callable[P, Awaitable[R]], /) -> AsyncMemoized[P, R]: ...

    @overload
    def memoize(
        self,
        fn: None = None,
        /,
        *,
        ttl: float | None = None,
        policy: Policy | None = None,
        key: Callable[..., Any] | None = None,
        name: str | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], AsyncMemoized[P, R]]: ...

    def memoize(
        self,
        fn: Callable[P, Awaitable[R]] | None = None,
        /,
        *,
        ttl: float | None = None,
        policy: Policy | None = None,
        key: Callable[..., Any] | None = None,
        name: str | None = None,
    ) -> Any:
        """Decorator: a function whose results are cached here, one call fleet-wide.

        ``@cache.memoize`` or ``@cache.memoize(ttl=, policy=, key=, name=)`` (AsyncCache
        takes coroutine functions, Cache plain ones).  The request of a call (its arguments
        as JSON data, or ``key(*args, **kwargs)``) is described in
        :mod:`fleetcache.core.memoize`.  ``ttl`` replaces the policy's, checked now.  The
        result has ``.cache``, ``.request(*args, **kwargs)`` and ``.forget(*args, **kwargs)``.
        """
        use = memo_policy(self.policy, policy, ttl)

        def decorate(func: Callable[P, Awaitable[R]]) -> AsyncMemoized[P, R]:
            check_kind_async(func)
            request_of = request_builder(func, key=key, name=name)

            @functools.wraps(func)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                request = request_of(*args, **kwargs)
                return await self.get_or_set(request, lambda: func(*args, **kwargs), policy=use)

            async def forget(*args: P.args, **kwargs: P.kwargs) -> bool:
                return await self.delete(request_of(*args, **kwargs))

            return cast("AsyncMemoized[P, R]", expose(wrapper, self, request_of, forget))

        return decorate if fn is None else decorate(fn)

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

        Background refreshes, and leaders still holding a lease (a cancelled request
        releasing it, a compute still running), get up to ``timeout`` seconds each (default:
        twice ``policy.redis_timeout``, at least 1 s) to finish, release and wake their
        followers first (asyncio refreshes still running then are cancelled).  The client you passed
        stays open (it is yours).  A closed cache reconnects if it is used again.
        """
        b = self._binding
        if b.loop is not current_loop_async():
            # Bound to an event loop that is gone: nothing of it can be awaited here.
            with self._bind_guard:
                self._binding = self._bind(current_loop_async())
            return
        bound = timeout if timeout is not None else max(1.0, 2 * (self.policy.redis_timeout or 1))
        if not await b.background.stop(bound):
            log.warning("closing cache %r with background refreshes still running",
                        self.namespace)
        if not await b.leaders.wait_idle(bound):
            log.warning(
                "closing cache %r with %d leader(s) still holding a lease (they expire)",
                self.namespace, len(b.leaders),
            )
        await b.notifier.stop()
        await b.shards.stop()
        for client in b.owned:
            await disconnect_async(client)

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

    # ------------------------------------------------------------------ the flow

    def _policy_for(self, policy: Policy | None) -> Policy:
        if policy is None:
            return self.policy
        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a fleetcache.Policy, not {type(policy).__name__}")
        return policy

    async def _resolve(  # noqa: PLR0917 - the call's whole context
        self,
        b: AsyncBinding,
        flight: str,
        request: Any,
        digest: str,
        compute: Callable[[], Any],
        looked: bool,
        policy: Policy,
    ) -> Any:
        """Run by one caller per process for a missing key: Redis flow, or fail open."""
        call = AsyncComputeCall(compute)
        if self._breaker.allow():
            try:
                value = await self._resolve_with_redis(
                    b, flight, request, digest, call, looked, policy
                )
            except BackendError as exc:
                self._fail.degraded(exc, policy)
            else:
                self._breaker.success()
                return value
        else:
            self._fail.skipped(policy)
        if call.ran:  # compute ran before Redis failed: its outcome, not a second call
            return await call()
        self.stats.incr("upstream_calls")
        try:
            return await call()
        finally:
            self.stats.observe(UPSTREAM_SECONDS, call.seconds)

    async def _resolve_with_redis(  # noqa: PLR0917 - the call's whole context
        self,
        b: AsyncBinding,
        flight: str,
        request: Any,
        digest: str,
        call: AsyncComputeCall,
        looked: bool,
        policy: Policy,
    ) -> Any:
        if not looked:  # the caller's own look failed or was skipped: look now
            found = await self._hits.lookup(b, digest, policy)
            if found is not None:
                self.stats.incr("hits")
                return found[0].value
            self.stats.incr("misses")
        keys = await self._keys(b, digest)
        return await self._follower.fill(b, flight, request, keys, call, policy)
