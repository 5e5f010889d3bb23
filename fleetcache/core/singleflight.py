"""In-process single-flight: concurrent callers of one key in one process share one call.

A hand-written pair (DESIGN §5): :class:`SingleFlight` for threads,
:class:`AsyncSingleFlight` for the tasks of one event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from fleetcache.errors import WaitTimeout


class _Flight:
    __slots__ = ("abandoned", "done", "error", "value", "waiters")

    def __init__(self) -> None:
        self.waiters = 0
        self.done = threading.Event()
        self.value: Any = None
        self.error: Exception | None = None
        self.abandoned = False


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
            if not flight.done.wait(timeout):
                raise WaitTimeout(key, timeout)
            if flight.abandoned:
                continue
            if flight.error is not None:
                raise flight.error
            return flight.value, True

    def _lead(self, key: str, flight: _Flight, fn: Callable[[], Any]) -> Any:
        try:
            flight.value = fn()
            return flight.value
        except Exception as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.abandoned = True
            raise
        finally:
            with self._guard:
                del self._flights[key]
            flight.done.set()


class _AsyncFlight:
    __slots__ = ("abandoned", "future", "waiters")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future
        self.waiters = 0
        self.abandoned = False


class AsyncSingleFlight:
    """The asyncio twin of :class:`SingleFlight`: coalesces concurrent tasks per key.

    The first task runs ``fn``; others await its outcome (shielded, so a cancelled waiter
    does not cancel the runner).  A runner cancelled or killed by a non-``Exception``
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

    async def run(
        self, key: str, fn: Callable[[], Awaitable[Any]], timeout: float
    ) -> tuple[Any, bool]:
        """Return ``(value, shared)``: ``shared`` is True when another task computed it."""
        while True:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _AsyncFlight(
                    asyncio.get_running_loop().create_future()
                )
                return await self._lead(key, flight, fn), False
            flight.waiters += 1
            try:
                await asyncio.wait_for(asyncio.shield(flight.future), timeout)
            except TimeoutError:
                raise WaitTimeout(key, timeout) from None
            except Exception:
                pass  # the runner's exception: re-raised below from the future
            finally:
                flight.waiters -= 1
            if flight.abandoned:
                continue
            return flight.future.result(), True

    async def _lead(self, key: str, flight: _AsyncFlight, fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            value = await fn()
        except Exception as exc:
            flight.future.set_exception(exc)
            flight.future.exception()  # retrieved: no "never retrieved" warning
            raise
        except BaseException:
            flight.abandoned = True
            flight.future.set_result(None)
            raise
        finally:
            del self._flights[key]
        flight.future.set_result(value)
        return value
