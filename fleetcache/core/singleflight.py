"""In-process single-flight: concurrent callers of one key in one process share one call."""

from __future__ import annotations

import threading
from collections.abc import Callable
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
