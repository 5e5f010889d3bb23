"""The asyncio lease watchdog: a task that renews a lease while work runs under it.

The twin of :class:`fleetcache.locking.watchdog.Watchdog` (same names, same rules: extend
every ``ttl/3``, stop at ``max_hold``, mark :attr:`lost` on :class:`LockLost`, retry a
backend error at the next tick).  ``start()`` creates the task; ``await stop()`` cancels it
and waits for it, so no task outlives the work it guarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from fleetcache.errors import FleetcacheError, LockLost
from fleetcache.locking.lease import Lease

log = logging.getLogger("fleetcache.watchdog")


class AsyncExtender(Protocol):
    """What the watchdog needs of an asyncio lock: ``extend``."""

    async def extend(self, lease: Lease, ttl: float) -> Lease:
        """Extend ``lease`` to ``ttl`` seconds from now or raise LockLost."""
        ...


class AsyncWatchdog:
    """Extends ``lease`` to ``ttl`` every ``ttl/3`` seconds until stopped (a task)."""

    def __init__(
        self, lock: AsyncExtender, lease: Lease, ttl: float, max_hold: float | None = None
    ) -> None:
        self._lock = lock
        self.lease = lease
        self._ttl = ttl
        self._deadline = None if max_hold is None else time.monotonic() + max_hold
        self.lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> AsyncWatchdog:
        """Start the renewal task; return self."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"fleetcache-watchdog:{self.lease.name}"
        )
        return self

    async def stop(self) -> Lease:
        """Cancel the task, wait for it to end, and return the latest lease."""
        task, self._task = self._task, None
        self._stopped = True
        while task is not None and not task.done():
            task.cancel()
            # asyncio.wait never raises the task's own CancelledError, yet still lets a
            # cancellation of the caller through.  A cancellation can be swallowed inside
            # the redis client (a timeout racing with it), so re-cancel until it ends; the
            # stop flag ends it at its next step in any case.
            await asyncio.wait([task], timeout=0.05)
        return self.lease

    async def _run(self) -> None:
        interval = self._ttl / 3.0
        while not self._stopped:
            await asyncio.sleep(interval)
            if self._stopped:
                return
            if self._deadline is not None and time.monotonic() >= self._deadline:
                log.warning("lease %s held past max_hold; no longer renewed", self.lease.name)
                return
            try:
                renewed = await self._lock.extend(self.lease, self._ttl)
            except LockLost:
                if not self._stopped:  # not merely released under our feet
                    log.warning("lease %s lost while held", self.lease.name)
                    self.lost.set()
                return
            except FleetcacheError as exc:
                log.warning("renewing lease %s failed: %s", self.lease.name, exc)
                continue
            if not self._stopped:
                self.lease = renewed
