"""The lease watchdog: renews a lease in a background thread while work runs under it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from fleetcache.errors import FleetcacheError, LockLost
from fleetcache.locking.lease import Lease

log = logging.getLogger("fleetcache.watchdog")


class Extender(Protocol):
    """What the watchdog needs of a lock: ``extend``."""

    def extend(self, lease: Lease, ttl: float) -> Lease:
        """Extend ``lease`` to ``ttl`` seconds from now or raise LockLost."""
        ...


class Watchdog:
    """Extends ``lease`` to ``ttl`` every ``ttl/3`` seconds until stopped.

    When an extension finds the lease gone (:class:`LockLost`) the watchdog sets
    :attr:`lost` and stops; a backend error is retried at the next tick (the lease may
    still be valid).  ``max_hold`` bounds the total time the lease is kept alive: past it
    the watchdog stops renewing, so a hung call cannot hold a key forever.
    Use as a context manager; ``stop()`` returns promptly (the thread waits on an event).
    """

    def __init__(
        self, lock: Extender, lease: Lease, ttl: float, max_hold: float | None = None
    ) -> None:
        self._lock = lock
        self._lease = lease
        self._ttl = ttl
        self._deadline = None if max_hold is None else time.monotonic() + max_hold
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._guard = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"fleetcache-watchdog:{lease.name}", daemon=True
        )

    @property
    def lease(self) -> Lease:
        """The most recently renewed lease."""
        with self._guard:
            return self._lease

    def start(self) -> Watchdog:
        """Start renewing; return self."""
        self._thread.start()
        return self

    def stop(self) -> Lease:
        """Stop renewing and return the latest lease, at once.

        The thread is not joined (that would cost the caller a thread switch on a busy
        machine): it sees the stop event and ends by itself.  An extension in flight may
        still land; it only prolongs the lease that the caller is about to release.
        """
        self._stop.set()
        return self.lease

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        interval = self._ttl / 3.0
        while not self._stop.wait(interval):
            if self._deadline is not None and time.monotonic() >= self._deadline:
                log.warning("lease %s held past max_hold; no longer renewed", self._lease.name)
                return
            try:
                renewed = self._lock.extend(self.lease, self._ttl)
            except LockLost:
                if not self._stop.is_set():  # not merely released under our feet
                    log.warning("lease %s lost while held", self._lease.name)
                    self.lost.set()
                return
            except FleetcacheError as exc:  # backend trouble: the lease may still be valid
                log.warning("renewing lease %s failed: %s", self._lease.name, exc)
                continue
            with self._guard:
                self._lease = renewed
