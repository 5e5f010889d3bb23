"""The asyncio watchdog: renews, stops promptly, and cannot be kept alive by a lock."""

from __future__ import annotations

import asyncio
import contextlib

from fleetcache.locking import AsyncWatchdog, Lease


class SwallowingLock:
    """A lock whose extend swallows a cancellation, as a client racing a timeout can."""

    def __init__(self) -> None:
        self.extending = asyncio.Event()
        self.calls = 0

    async def extend(self, lease: Lease, ttl: float) -> Lease:
        self.calls += 1
        self.extending.set()
        with contextlib.suppress(asyncio.CancelledError):  # swallowed: the task goes on
            await asyncio.sleep(10)
        return lease


class CountingLock:
    """A lock whose extend succeeds at once and counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def extend(self, lease: Lease, ttl: float) -> Lease:
        self.calls += 1
        return lease


LEASE = Lease("name", "t" * 32, None, 0.0)


def test_stop_returns_even_if_a_cancellation_is_swallowed() -> None:
    """stop() ends the task although the extend in flight swallowed the first cancel."""

    async def body() -> None:
        lock = SwallowingLock()
        dog = AsyncWatchdog(lock, LEASE, ttl=0.03).start()
        await lock.extending.wait()
        async with asyncio.timeout(2):
            await dog.stop()
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("fleetcache-")]

    asyncio.run(body())


def test_renews_every_third_of_the_ttl_until_stopped() -> None:
    """The watchdog extends about every ttl/3 and not after stop()."""

    async def body() -> None:
        lock = CountingLock()
        dog = AsyncWatchdog(lock, LEASE, ttl=0.06).start()
        await asyncio.sleep(0.2)
        await dog.stop()
        calls = lock.calls
        assert calls >= 3
        await asyncio.sleep(0.1)
        assert lock.calls == calls

    asyncio.run(body())
