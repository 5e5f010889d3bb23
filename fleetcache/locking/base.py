"""The lock Protocol every backend satisfies, and the behaviour they share.

A backend keeps no per-holder state: ``try_acquire``/``acquire`` return a
:class:`~fleetcache.locking.lease.Lease` and the caller passes it back to ``extend`` and
``release``.  :class:`LockBase` gives a backend ``acquire`` (retries of ``try_acquire``
with random exponential jitter, via tenacity) and ``hold`` (a context manager that renews
the lease in a watchdog thread) from its ``try_acquire``/``extend``/``release``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from tenacity import (
    RetryError,
    Retrying,
    retry_if_result,
    stop_before_delay,
    wait_random_exponential,
)

from fleetcache.errors import LockLost, LockNotAcquired
from fleetcache.locking.lease import Lease
from fleetcache.locking.watchdog import Watchdog


@runtime_checkable
class Lock(Protocol):
    """A distributed lock that hands out leases."""

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        """One attempt: a lease on ``name`` valid for ``ttl`` seconds, or None if held."""
        ...

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        """Acquire ``name`` within ``wait`` seconds or raise LockNotAcquired."""
        ...

    def extend(self, lease: Lease, ttl: float) -> Lease:
        """Reset the lease's TTL to ``ttl`` from now; raise LockLost if no longer held."""
        ...

    def release(self, lease: Lease) -> bool:
        """Release; False if the lease had already expired or been taken."""
        ...

    def hold(
        self, name: str, ttl: float, wait: float = ...
    ) -> contextlib.AbstractContextManager[Lease]:
        """Acquire, renew while the block runs, release on exit."""
        ...


def check_name(name: str) -> None:
    """Raise at once for a lock name that is not a non-empty str."""
    if not isinstance(name, str):
        raise TypeError(f"lock name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("lock name must not be empty")


def check_seconds(what: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise at once for a duration that is not a positive (or zero) finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} "
                         f"finite number of seconds, not {value!r}")


def check_lease(lease: Lease) -> None:
    """Raise at once when ``lease`` is not a Lease."""
    if not isinstance(lease, Lease):
        raise TypeError(f"expected a Lease, not {type(lease).__name__}")


def ttl_ms(ttl: float) -> int:
    """A TTL in whole milliseconds, at least 1."""
    return max(1, math.ceil(ttl * 1000))


class LockBase:
    """``acquire`` and ``hold`` built on a backend's ``try_acquire``/``extend``/``release``."""

    #: Bounds of the random exponential back-off between acquire attempts (seconds).
    retry_min: float = 0.002
    retry_max: float = 0.05

    def try_acquire(self, name: str, ttl: float) -> Lease | None:  # pragma: no cover
        raise NotImplementedError

    def extend(self, lease: Lease, ttl: float) -> Lease:  # pragma: no cover
        raise NotImplementedError

    def release(self, lease: Lease) -> bool:  # pragma: no cover
        raise NotImplementedError

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        """Retry ``try_acquire`` with random exponential jitter until ``wait`` runs out."""
        check_name(name)
        check_seconds("ttl", ttl)
        check_seconds("wait", wait, allow_zero=True)
        start = time.monotonic()
        retrying = Retrying(
            stop=stop_before_delay(wait),
            wait=wait_random_exponential(multiplier=self.retry_min, max=self.retry_max),
            retry=retry_if_result(lambda lease: lease is None),
            reraise=True,
        )
        try:
            lease = retrying(self.try_acquire, name, ttl)
        except RetryError:
            lease = None
        if lease is None:
            raise LockNotAcquired(name, time.monotonic() - start)
        return lease

    @contextlib.contextmanager
    def hold(
        self, name: str, ttl: float, wait: float = 10.0, max_hold: float | None = None
    ) -> Iterator[Lease]:
        """Acquire ``name``, renew the lease every ttl/3 while the block runs, release.

        If the lease is lost while the block runs (renewal found it taken or expired),
        :class:`LockLost` is raised when the block exits, so the caller learns that its
        work was not exclusive.
        """
        lease = self.acquire(name, ttl, wait)
        dog = Watchdog(self, lease, ttl, max_hold).start()
        try:
            yield lease
        finally:
            latest = dog.stop()
            released = self.release(latest)
        if dog.lost.is_set() or not released:
            raise LockLost(name, "the lease expired or was taken while the block ran")
