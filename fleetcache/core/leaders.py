"""Counting a cache's leaders in flight, so that ``close()`` can wait for them.

A hand-written pair (ARCHITECTURE §7): :class:`Leaders` for threads, :class:`AsyncLeaders`
for the tasks of one event loop.  A leader enters when it got its lease and leaves after it
released the lease and told the followers; ``close()`` waits (bounded) until none is left,
so that a leader cancelled at shutdown (uvicorn cancels in-flight requests and then runs
the lifespan shutdown at once) still releases and wakes the fleet instead of racing the
closing pool.
"""

from __future__ import annotations

import asyncio
import threading


class Leaders:
    """How many leaders of one cache hold a lease right now (threads)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def enter(self) -> None:
        """A leader got its lease."""
        with self._cond:
            self._count += 1

    def leave(self) -> None:
        """A leader released its lease and notified its followers."""
        with self._cond:
            self._count -= 1
            if self._count == 0:
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no leader is left (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count == 0, timeout)


class AsyncLeaders:
    """How many leaders of one cache hold a lease right now (tasks of one loop)."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return self._count

    def enter(self) -> None:
        """A leader got its lease."""
        self._count += 1
        self._idle.clear()

    def leave(self) -> None:
        """A leader released its lease and notified its followers."""
        self._count -= 1
        if self._count == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no leader is left (True) or ``timeout`` passes (False)."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
