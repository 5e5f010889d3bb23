"""RedisLockAdapter: python-redis-lock's ``Lock`` behind fleetcache's lease Protocol.

For users who already run python-redis-lock (its keys ``lock:<name>`` and
``lock-signal:<name>``): fleetcache and their other code then exclude each other on the
same names.  What it brings that we keep: its atomic scripts and its blocking
``acquire`` that waits on a signal list (``BLPOP``), woken when the holder releases,
instead of polling.

Where we use our own scripts instead (:class:`~fleetcache.locking.SetNxLock`,
:class:`~fleetcache.locking.FencedLock`) and why: python-redis-lock expires in whole
seconds (a TTL here is rounded *up* to whole seconds, at least 1 s), keeps the holder's
token on the ``Lock`` object (this adapter builds a short-lived ``Lock`` per call from the
:class:`Lease`, so the backend stays stateless), hands out no fencing token, and its
blocking wait may not exceed the expiry unless auto-renewal runs in its own thread.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Self

import redis
import redis_lock

from fleetcache.backend import bounded_lock_client, map_redis_errors
from fleetcache.errors import LockLost, LockNotAcquired
from fleetcache.locking._sync.base import LockBase
from fleetcache.locking.checks import check_lease, check_name, check_seconds
from fleetcache.locking.lease import Lease, drift, new_token


def whole_seconds(ttl: float) -> int:
    """python-redis-lock's expiry: ``ttl`` rounded up to whole seconds, at least 1."""
    return max(1, math.ceil(ttl))


class RedisLockAdapter(LockBase):
    """python-redis-lock as a fleetcache lock backend (no fencing; whole-second TTLs)."""

    def __init__(self, client: redis.Redis) -> None:
        if not isinstance(client, redis.Redis):
            raise TypeError(f"RedisLockAdapter needs a redis.Redis, not {type(client).__name__}")
        self.client = client

    def on_client(self, client: redis.Redis) -> Self:
        """A copy of this adapter that talks through ``client``."""
        twin = copy.copy(self)
        twin.client = client
        return twin

    def bounded(self, timeout: float) -> Self:
        """A copy whose every call is bounded by ``timeout`` seconds."""
        bounded = bounded_lock_client(self.client, timeout)
        assert isinstance(bounded, redis.Redis)  # the adapter takes plain clients only
        return self.on_client(bounded)

    def _lock(self, name: str, ttl: float, token: str) -> Any:
        return redis_lock.Lock(self.client, name, expire=whole_seconds(ttl), id=token)

    def _lease(self, name: str, token: str, ttl: float, start: float) -> Lease:
        secs = whole_seconds(ttl)
        return Lease(name, token, None, start + secs - drift(secs))

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        """One non-blocking attempt."""
        check_name(name)
        check_seconds("ttl", ttl)
        token = new_token()
        start = time.monotonic()
        with map_redis_errors(f"acquiring lock {name!r}"):
            ok = self._lock(name, ttl, token).acquire(blocking=False)
        return self._lease(name, token, ttl, start) if ok else None

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        """Blocking acquire on python-redis-lock's signal hand-off, bounded by ``wait``.

        Its wait may not exceed the expiry, so a longer ``wait`` is served in slices of at
        most the expiry each.
        """
        check_name(name)
        check_seconds("ttl", ttl)
        check_seconds("wait", wait, allow_zero=True)
        start = time.monotonic()
        while True:
            remaining = wait - (time.monotonic() - start)
            if remaining <= 0:
                lease = self.try_acquire(name, ttl)
                if lease is None:
                    raise LockNotAcquired(name, time.monotonic() - start)
                return lease
            token = new_token()
            attempt = time.monotonic()
            # BLPOP takes whole seconds; a sub-second remainder gets a 1 s slice, so the
            # wait may overrun by under a second.
            slice_ = whole_seconds(min(remaining, whole_seconds(ttl)))
            with map_redis_errors(f"acquiring lock {name!r}"):
                ok = self._lock(name, ttl, token).acquire(blocking=True, timeout=slice_)
            if ok:
                return self._lease(name, token, ttl, attempt)

    def extend(self, lease: Lease, ttl: float) -> Lease:
        """Reset the expiry to ``ttl`` (whole seconds) if still held; LockLost otherwise."""
        check_lease(lease)
        check_seconds("ttl", ttl)
        start = time.monotonic()
        try:
            with map_redis_errors(f"extending lock {lease.name!r}"):
                self._lock(lease.name, ttl, lease.token).extend(whole_seconds(ttl))
        except redis_lock.NotAcquired as exc:
            raise LockLost(lease.name, "expired or taken before extend") from exc
        return self._lease(lease.name, lease.token, ttl, start)

    def release(self, lease: Lease) -> bool:
        """Release if still held; False if it had expired or been taken."""
        check_lease(lease)
        try:
            with map_redis_errors(f"releasing lock {lease.name!r}"):
                self._lock(lease.name, 1, lease.token).release()
        except redis_lock.NotAcquired:
            return False
        return True
