"""The lock Protocol every backend satisfies, and the behaviour they share.

A backend keeps no per-holder state: ``try_acquire``/``acquire`` return a
:class:`~fleetcache.locking.lease.Lease` and the caller passes it back to ``extend`` and
``release``.  :class:`AsyncLockBase` gives a backend ``acquire`` (retries of
``try_acquire`` with random exponential jitter, via tenacity) and ``hold`` (a context
manager that renews the lease in a watchdog) from its ``try_acquire``/``extend``/``release``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_result,
    stop_before_delay,
    wait_random_exponential,
)

from fleetcache.errors import LockLost, LockNotAcquired
from fleetcache.locking.async_watchdog import AsyncWatchdog
from fleetcache.locking.checks import check_name, check_seconds
from fleetcache.locking.lease import Lease


@runtime_checkable
class AsyncLock(Protocol):
    """A distributed lock that hands out leases."""

    async def try_acquire(self, name: str, ttl: float) -> Lease | None:
        """One attempt: a lease on ``name`` valid for ``ttl`` seconds, or None if held."""
        ...

    async def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        """Acquire ``name`` within ``wait`` seconds or raise LockNotAcquired."""
        ...

    async def extend(self, lease: Lease, ttl: float) -> Lease:
        """Reset the lease's TTL to ``ttl`` from now; raise LockLost if no longer held."""
        ...

    async def release(self, lease: Lease) -> bool:
        """Release; False if the lease had already expired or been taken."""
        ...

    def hold(
        self, name: str, ttl: float, wait: float = ...
    ) -> contextlib.AbstractAsyncContextManager[Lease]:
        """Acquire, renew while the block runs, release on exit."""
        ...


class AsyncLockBase:
    """``acquire`` and ``hold`` built on a backend's ``try_acquire``/``extend``/``release``."""

    #: Bounds of the random exponential back-off between acquire attempts (seconds).
    retry_min: float = 0.002
    retry_max: float = 0.05

    async def try_acquire(self, name: str, ttl: float) -> Lease | None:  # pragma: no cover
        raise NotImplementedError

    async def extend(self, lease: Lease, ttl: float) -> Lease:  # pragma: no cover
        raise NotImplementedError

    async def release(self, lease: Lease) -> bool:  # pragma: no cover
        raise NotImplementedError

    async def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        """Retry ``try_acquire`` with random exponential jitter until ``wait`` runs out."""
        check_name(name)
        check_seconds("ttl", ttl)
        check_seconds("wait", wait, allow_zero=True)
        start = time.monotonic()
        first = await self.try_acquire(name, ttl)
        if first is not None:  # the common case: no retry machinery to build
            return first
        retrying = AsyncRetrying(
            stop=stop_before_delay(wait),
            wait=wait_random_exponential(multiplier=self.retry_min, max=self.retry_max),
            retry=retry_if_result(lambda lease: lease is None),
            reraise=True,
        )
        lease: Lease | None
        try:
            lease = await retrying(self.try_acquire, name, ttl)
        except RetryError:
            lease = None
        if lease is None:
            raise LockNotAcquired(name, time.monotonic() - start)
        return lease

    @contextlib.asynccontextmanager
    async def hold(
        self, name: str, ttl: float, wait: float = 10.0, max_hold: float | None = None
    ) -> AsyncIterator[Lease]:
        """Acquire ``name``, renew the lease every ttl/3 while the block runs, release.

        If the lease is lost while the block runs (renewal found it taken or expired),
        :class:`LockLost` is raised when the block exits, so the caller learns that its
        work was not exclusive.
        """
        lease = await self.acquire(name, ttl, wait)
        dog = AsyncWatchdog(self, lease, ttl, max_hold).start()
        try:
            yield lease
        finally:
            latest = await dog.stop()
            released = await self.release(latest)
        if dog.lost.is_set() or not released:
            raise LockLost(name, "the lease expired or was taken while the block ran")
