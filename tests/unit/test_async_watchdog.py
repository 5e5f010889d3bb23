"""The asyncio watchdog: renews, stops promptly, and cannot be kept alive by a lock."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

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
    """A lock whose extend succeeds at once, records when and with what it was called,
    and sets :attr:`reached` at the ``target``-th call."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.reached = asyncio.Event()
        self.stamps: list[float] = []
        self.seen: list[tuple[Lease, float]] = []
        self.returned: list[Lease] = []

    async def extend(self, lease: Lease, ttl: float) -> Lease:
        self.stamps.append(time.monotonic())
        self.seen.append((lease, ttl))
        renewed = lease.renewed(float(len(self.stamps)))  # each renewal is a new lease
        self.returned.append(renewed)
        if len(self.stamps) >= self.target:
            self.reached.set()
        return renewed


LEASE = Lease("name", "t" * 32, None, 0.0)


def test_stop_returns_even_if_a_cancellation_is_swallowed() -> None:
    """stop() ends the task although the extend in flight swallowed the first cancel."""

    async def body() -> None:
        lock = SwallowingLock()
        dog = AsyncWatchdog(lock, LEASE, ttl=0.03).start()
        await lock.extending.wait()
        async with asyncio.timeout(2):
            await dog.stop()
        assert watchdog_tasks() == []

    asyncio.run(body())


def watchdog_tasks() -> list[asyncio.Task[object]]:
    """The fleetcache tasks alive on the running loop."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("fleetcache-")]


def test_renews_every_third_of_the_ttl_until_stopped() -> None:
    """The watchdog extends the latest lease every ttl/3 (no sooner), and its task has
    ended when stop() returns, so nothing can extend afterwards."""
    ttl = 0.09
    interval = ttl / 3

    async def body() -> None:
        lock = CountingLock(target=4)
        begin = time.monotonic()
        dog = AsyncWatchdog(lock, LEASE, ttl=ttl).start()
        (task,) = watchdog_tasks()
        async with asyncio.timeout(5):
            await lock.reached.wait()
        latest = await dog.stop()

        assert task.done()  # stop() waited for the renewal task: no extend can follow
        assert watchdog_tasks() == []
        calls = len(lock.stamps)
        assert calls >= 4
        # Spacing: each extend comes a full interval after the start or the previous one
        # (a loose lower bound; no upper bound: this machine may be slow).
        gaps = [b - a for a, b in itertools.pairwise([begin, *lock.stamps])]
        assert all(gap >= interval * 0.8 for gap in gaps), gaps
        # Each extend asks for the full TTL and renews the lease the previous one returned.
        assert [t for _, t in lock.seen] == [ttl] * calls
        assert [lease for lease, _ in lock.seen] == [LEASE, *lock.returned[:-1]]
        assert latest == lock.returned[-1]
        assert dog.lease == latest

    asyncio.run(body())
