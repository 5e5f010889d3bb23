"""In-process single-flight: concurrent callers of one key in one process share one call.

A hand-written pair (ARCHITECTURE §7): :class:`SingleFlight` for threads,
:class:`AsyncSingleFlight` for the tasks of one event loop.  The cache keys its flights by
generation and request hash, so a call made after ``invalidate()`` never joins a flight
of the old generation (ARCHITECTURE §3.3).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from fleetcache.errors import WaitTimeout


class _Flight:
    __slots__ = ("abandoned", "done", "error", "settled", "value", "waiters")

    def __init__(self) -> None:
        self.waiters = 0
        self.done = threading.Event()
        self.value: Any = None
        self.error: Exception | None = None
        self.abandoned = False
        self.settled = False


class SingleFlight:
    """Coalesces concurrent calls per key among the threads of one process.

    The first caller of a key runs ``fn``; callers arriving while it runs wait for its
    outcome and get the same value or the same exception object.  If the runner dies of a
    non-``Exception`` (``KeyboardInterrupt``, ``SystemExit``) the waiters do not inherit it:
    one of them runs ``fn`` itself.  A waiter gives up with :class:`WaitTimeout` after
    ``timeout`` seconds.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def __len__(self) -> int:
        with self._guard:
            return len(self._flights)

    def waiting(self, key: str) -> int:
        """How many callers are waiting on the running call of ``key`` (0 if none runs)."""
        with self._guard:
            flight = self._flights.get(key)
            return 0 if flight is None else flight.waiters

    def settle(self, key: str, value: Any) -> None:
        """Hand ``value`` to the waiters of ``key`` now, before its runner returns.

        The runner calls it as soon as the value is safe (stored), so that the waiters do
        not also wait for the runner's clean-up (releasing its lease).
        """
        with self._guard:
            flight = self._flights.get(key)
        if flight is not None and not flight.done.is_set():
            flight.value = value
            flight.settled = True
            flight.done.set()

    def run(self, key: str, fn: Callable[[], Any], timeout: float) -> tuple[Any, bool]:
        """Return ``(value, shared)``: ``shared`` is True when another thread computed it."""
        while True:
            with self._guard:
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
                else:
                    flight.waiters += 1
            if leader:
                return self._lead(key, flight, fn), False
            try:
                done = flight.done.wait(timeout)
            finally:
                with self._guard:
                    flight.waiters -= 1
            if not done:
                raise WaitTimeout(key, timeout)
            if flight.abandoned:
                continue
            if flight.error is not None:
                raise flight.error
            return flight.value, True

    def _lead(self, key: str, flight: _Flight, fn: Callable[[], Any]) -> Any:
        try:
            value = fn()
            if not flight.settled:
                flight.value = value
            return value
        except Exception as exc:
            if not flight.settled:
                flight.error = exc
            raise
        except BaseException:
            if not flight.settled:
                flight.abandoned = True
            raise
        finally:
            with self._guard:
                del self._flights[key]
            flight.done.set()


class _AsyncFlight:
    __slots__ = ("abandoned", "done", "error", "settled", "value", "waiters")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.value: Any = None
        self.error: Exception | None = None
        self.waiters = 0
        self.abandoned = False
        self.settled = False


class AsyncSingleFlight:
    """The asyncio twin of :class:`SingleFlight`: coalesces concurrent tasks per key.

    The first task runs ``fn``; others wait on the flight's event (a cancelled waiter
    cancels nothing but its own wait).  A runner cancelled or killed by a non-``Exception``
    abandons the flight and one waiter runs ``fn`` itself.  Single event loop only.
    """

    def __init__(self) -> None:
        self._flights: dict[str, _AsyncFlight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def waiting(self, key: str) -> int:
        """How many tasks are waiting on the running call of ``key`` (0 if none runs)."""
        flight = self._flights.get(key)
        return 0 if flight is None else flight.waiters

    def settle(self, key: str, value: Any) -> None:
        """Hand ``value`` to the waiters of ``key`` now, before its runner returns."""
        flight = self._flights.get(key)
        if flight is not None and not flight.done.is_set():
            flight.value = value
            flight.settled = True
            flight.done.set()

    async def run(
        self, key: str, fn: Callable[[], Awaitable[Any]], timeout: float
    ) -> tuple[Any, bool]:
        """Return ``(value, shared)``: ``shared`` is True when another task computed it."""
        while True:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _AsyncFlight()
                return await self._lead(key, flight, fn), False
            flight.waiters += 1
            try:
                async with asyncio.timeout(timeout):
                    await flight.done.wait()
            except TimeoutError:
                raise WaitTimeout(key, timeout) from None
            finally:
                flight.waiters -= 1
            if flight.abandoned:
                continue
            if flight.error is not None:
                raise flight.error
            return flight.value, True

    async def _lead(self, key: str, flight: _AsyncFlight, fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            value = await fn()
            if not flight.settled:
                flight.value = value
            return value
        except Exception as exc:
            if not flight.settled:
                flight.error = exc
            raise
        except BaseException:
            if not flight.settled:
                flight.abandoned = True
            raise
        finally:
            del self._flights[key]
            flight.done.set()
