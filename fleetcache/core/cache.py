"""Cache: the synchronous cache and its fleet-wide single-flight flow (DESIGN §3)."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import orjson
import redis

from fleetcache.backend import bounded_client, map_redis_errors, register
from fleetcache.core import envelope
from fleetcache.core.breaker import Breaker
from fleetcache.core.call import ComputeCall
from fleetcache.core.clock import SYSTEM_CLOCK, Clock
from fleetcache.core.keys import EntryKeys, KeyLayout, request_hash, validate_namespace
from fleetcache.core.miss import MISS, Missing
from fleetcache.core.notifier import Notifier
from fleetcache.core.policy import Policy
from fleetcache.core.singleflight import SingleFlight
from fleetcache.core.stats import Stats
from fleetcache.errors import (
    BackendError,
    CodecError,
    FleetcacheError,
    LeaderFailed,
    WaitTimeout,
)
from fleetcache.locking.base import Lock
from fleetcache.locking.lease import Lease
from fleetcache.locking.setnx import SetNxLock
from fleetcache.locking.watchdog import Watchdog

log = logging.getLogger("fleetcache")

_PKG = "fleetcache.core"
#: How long a failed leader's error record lives (a new leader deletes it at once).
ERROR_RECORD_TTL = 10.0
#: Minimum TTL of the namespace generation key (refreshed whenever a process connects).
GENERATION_TTL = 30 * 86400.0


class Cache:
    """A Redis cache of expensive calls with one upstream call per key, fleet-wide.

    ``client`` is a :class:`redis.Redis`; unless ``policy.redis_timeout`` is None the cache
    opens its own connection pool with that client's connection settings and bounded
    timeouts.  ``lock`` defaults to a :class:`~fleetcache.locking.SetNxLock` on that pool.
    """

    def __init__(
        self,
        client: redis.Redis[Any],
        namespace: str = "default",
        lock: Lock | None = None,
        policy: Policy | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not isinstance(client, redis.Redis):
            raise TypeError(f"Cache needs a redis.Redis client, not {type(client).__name__}")
        if policy is None:
            policy = Policy()
        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a fleetcache.Policy, not {type(policy).__name__}")
        if lock is not None and not all(
            callable(getattr(lock, m, None)) for m in ("try_acquire", "extend", "release")
        ):
            raise TypeError(f"lock must be a fleetcache lock backend, not {type(lock).__name__}")
        self.namespace = validate_namespace(namespace)
        self.policy = policy
        self.stats = Stats()
        self._clock = clock
        self._layout = KeyLayout(self.namespace)
        self._redis = bounded_client(client, policy.redis_timeout)
        self.lock: Lock = lock if lock is not None else SetNxLock(self._redis)
        self._flights = SingleFlight()
        self._breaker = Breaker(policy.retry_backoff, policy.retry_backoff_max, clock)
        self._gen: int | None = None
        self._gen_guard = threading.Lock()
        self._notifier = Notifier(
            self._redis, self._layout.channel, self._refresh_generation, self._adopt_generation
        )
        self._claim = register(self._redis, _PKG, "claim")
        self._write = register(self._redis, _PKG, "write")
        self._fail = register(self._redis, _PKG, "fail")
        self._ensure_gen = register(self._redis, _PKG, "ensure_gen")
        self._invalidate = register(self._redis, _PKG, "invalidate")
        self._gen_ttl_ms = int(max(GENERATION_TTL, 2 * policy.ttl) * 1000)

    # ------------------------------------------------------------------ public API

    def get(self, request: Any) -> Any:
        """The cached value for ``request``, or :data:`~fleetcache.MISS`.

        Fail-open: with Redis failing, a MISS (``policy.fail_open``) or BackendError.
        """
        digest = request_hash(request)
        if not self._breaker.allow():
            return self._unavailable(None)
        try:
            env = self._read(self._keys(digest).value)
        except BackendError as exc:
            return self._unavailable(exc)
        self._breaker.success()
        if env is None:
            self.stats.incr("misses")
            return MISS
        self.stats.incr("hits")
        return env.value

    def set(self, request: Any, value: Any) -> bool:
        """Store ``value`` for ``request`` (unfenced); True when written.

        Raises TypeError before writing anything when either is not JSON data.  Fail-open:
        with Redis failing, False (``policy.fail_open``) or BackendError.
        """
        digest = request_hash(request)
        now = self._clock.time()
        payload = envelope.encode(
            envelope.Envelope(value, now, now + self.policy.ttl, 0.0, None)
        )
        try:
            keys = self._keys(digest)
            return self._store(keys, payload, None)
        except BackendError as exc:
            self._unavailable(exc)
            return False

    def delete(self, request: Any) -> bool:
        """Delete the entry for ``request``; True if there was one."""
        digest = request_hash(request)
        try:
            keys = self._keys(digest)
            with map_redis_errors("delete"):
                return bool(self._redis.delete(keys.value, keys.fence, keys.error))
        except BackendError as exc:
            self._unavailable(exc)
            return False

    def invalidate(self) -> int:
        """Make every entry of this namespace unreachable, fleet-wide, in O(1).

        The namespace moves to a new generation; every process learns it through pub/sub
        (or, while its subscription is down, by reading the generation on each call).  Old
        entries expire by their TTL.  Returns the new generation.  Raises BackendError when
        Redis is unreachable: an invalidation must not fail silently.
        """
        with map_redis_errors("invalidate"):
            gen = int(
                self._invalidate(
                    keys=[self._layout.gen], args=[self._gen_ttl_ms, self._layout.channel]
                )
            )
        self._adopt_generation(gen)
        return gen

    def get_or_set(self, request: Any, compute: Callable[[], Any]) -> Any:
        """The cached value for ``request``, computing it with ``compute()`` on a miss.

        Exactly one ``compute`` runs fleet-wide for concurrent misses of one request; see
        the README for what followers get when it raises.
        """
        if not callable(compute):
            raise TypeError(f"compute must be callable, not {type(compute).__name__}")
        digest = request_hash(request)
        value, shared = self._flights.run(
            digest, lambda: self._resolve(digest, compute), self.policy.wait_timeout
        )
        if shared:
            self.stats.incr("coalesced")
        return value

    @property
    def generation(self) -> int | None:
        """The namespace generation this cache currently uses (None before first use)."""
        return self._gen

    @property
    def subscribed(self) -> bool:
        """True while the cache's pub/sub subscription is up (notifications arrive)."""
        return self._notifier.healthy

    def close(self) -> None:
        """Stop the background subscription thread."""
        self._notifier.stop()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ generation

    def _refresh_generation(self) -> None:
        with map_redis_errors("reading the namespace generation"):
            gen = int(
                self._ensure_gen(
                    keys=[self._layout.gen], args=[self._gen_ttl_ms, self._layout.channel]
                )
            )
        with self._gen_guard:
            self._gen = gen

    def _adopt_generation(self, gen: int) -> None:
        with self._gen_guard:
            if self._gen is None or gen > self._gen:
                self._gen = gen

    def _keys(self, digest: str) -> EntryKeys:
        """Entry keys in the current generation (cached while subscribed, else read)."""
        if not self._notifier.healthy:
            timeout = self.policy.redis_timeout or 1.0
            if not self._notifier.start(timeout):
                self._refresh_generation()
        gen = self._gen
        if gen is None:
            self._refresh_generation()
            gen = self._gen
        assert gen is not None
        return self._layout.entry(digest, gen)

    # ------------------------------------------------------------------ the flow

    def _unavailable(self, exc: BackendError | None) -> Missing:
        if exc is not None:
            self.stats.incr("backend_errors")
            delay = self._breaker.failure()
            log.warning("Redis unavailable (%s); skipping it for %.2fs", exc, delay)
            if not self.policy.fail_open:
                raise exc
        elif not self.policy.fail_open:
            raise BackendError("Redis unavailable (recent failures; retrying soon)")
        self.stats.incr("fail_open")
        return MISS

    def _resolve(self, digest: str, compute: Callable[[], Any]) -> Any:
        call = ComputeCall(compute)
        if self._breaker.allow():
            try:
                value = self._resolve_with_redis(digest, call)
                self._breaker.success()
                return value
            except BackendError as exc:
                self._unavailable(exc)
        else:
            self._unavailable(None)
        if not call.ran:
            self.stats.incr("upstream_calls")
        return call()

    def _read(self, key: str) -> envelope.Envelope | None:
        with map_redis_errors("GET"):
            raw = self._redis.get(key)
        return self._decode(key, raw)

    def _decode(self, key: str, raw: Any) -> envelope.Envelope | None:
        if raw is None:
            return None
        try:
            return envelope.decode(raw)
        except CodecError as exc:
            self.stats.incr("codec_errors")
            log.warning("corrupt entry %s treated as a miss: %s", key, exc)
            return None

    def _resolve_with_redis(self, digest: str, call: ComputeCall) -> Any:
        keys = self._keys(digest)
        env = self._read(keys.value)
        if env is not None:
            self.stats.incr("hits")
            return env.value
        self.stats.incr("misses")
        return self._fill(keys, call)

    def _fill(self, keys: EntryKeys, call: ComputeCall) -> Any:
        """Become the leader, or follow the leader until its value appears."""
        lease = self.lock.try_acquire(keys.lock, self.policy.lock_ttl)
        if lease is not None:
            return self._lead(keys, lease, call)
        start = self._clock.monotonic()
        deadline = start + self.policy.wait_timeout
        poll = self.policy.effective_poll_interval
        with self._notifier.waiter(keys.value) as waiter:
            while True:
                with map_redis_errors("MGET"):
                    raw, err = self._redis.mget(keys.value, keys.error)
                env = self._decode(keys.value, raw)
                if env is not None:
                    self.stats.incr("followed")
                    return env.value
                if err is not None:
                    self.stats.incr("leader_failures")
                    raise self._leader_failed(keys.value, err)
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    self.stats.incr("wait_timeouts")
                    raise WaitTimeout(keys.value, self._clock.monotonic() - start)
                if waiter.wait(min(remaining, random.uniform(poll / 2, poll))):
                    continue  # notified: the value (or an error record) should be there
                lease = self.lock.try_acquire(keys.lock, self.policy.lock_ttl)
                if lease is not None:
                    self.stats.incr("takeovers")
                    return self._lead(keys, lease, call)

    def _lead(self, keys: EntryKeys, lease: Lease, call: ComputeCall) -> Any:
        """Holding the lease: double-check, compute, write (fenced), release."""
        policy = self.policy
        dog = Watchdog(self.lock, lease, policy.lock_ttl, policy.max_hold).start()
        try:
            with map_redis_errors("claim"):
                raw = self._claim(keys=[keys.value, keys.error])
            env = self._decode(keys.value, raw)
            if env is not None:
                self.stats.incr("hits")
                return env.value
            self.stats.incr("upstream_calls")
            try:
                value = call()
                now = self._clock.time()
                payload = envelope.encode(
                    envelope.Envelope(value, now, now + policy.ttl, call.seconds, lease.fence)
                )
            except Exception as exc:
                self._record_failure(keys, exc)
                raise
            if dog.lost.is_set() or self._clock.monotonic() > dog.lease.valid_until:
                # Paused or partitioned past the lease: another leader may have written.
                # The write below is fenced (when the lock gives fences) and may be refused.
                self.stats.incr("leases_lost")
            self._store(keys, payload, dog.lease.fence)
            return value
        finally:
            latest = dog.stop()
            try:
                self.lock.release(latest)
            except FleetcacheError as exc:
                log.warning("releasing %s failed (it will expire): %s", keys.lock, exc)

    def _store(self, keys: EntryKeys, payload: bytes, fence: int | None) -> bool:
        with map_redis_errors("write"):
            written = self._write(
                keys=[keys.value, keys.fence],
                args=[
                    payload,
                    max(1, int(self.policy.ttl * 1000)),
                    self._layout.channel,
                    b"r|" + keys.value.encode(),
                    "" if fence is None else str(fence),
                ],
            )
        if not written:
            self.stats.incr("writes_refused")
            log.info("write of %s refused: a newer leader (fence > %s) wrote", keys.value, fence)
        return bool(written)

    def _record_failure(self, keys: EntryKeys, exc: Exception) -> None:
        record = orjson.dumps(
            {"t": f"{type(exc).__module__}.{type(exc).__qualname__}", "m": str(exc)[:2000]}
        )
        try:
            with map_redis_errors("recording a leader failure"):
                self._fail(
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
    def _leader_failed(key: str, raw: bytes) -> LeaderFailed:
        try:
            record = orjson.loads(raw)
            return LeaderFailed(key, str(record["t"]), str(record["m"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return LeaderFailed(key, "unknown", repr(raw[:200]))


