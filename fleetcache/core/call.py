"""One run of the user's ``compute``: remembers whether it ran, its value or its error.

A hand-written pair (ARCHITECTURE §7): :class:`ComputeCall` for threads, :class:`AsyncComputeCall`
for asyncio.  The cache may reach the fail-open path after ``compute`` already ran (say
Redis died during the write); it then returns the remembered value (or re-raises the
remembered error) instead of calling upstream a second time.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any


class _Outcome:
    __slots__ = ("_fn", "error", "ran", "seconds", "value")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self.ran = False
        self.value: Any = None
        self.error: Exception | None = None
        self.seconds = 0.0

    def _replay(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class ComputeCall(_Outcome):
    """Runs a synchronous ``compute`` at most once."""

    def __call__(self) -> Any:
        if self.ran:
            return self._replay()
        self.ran = True
        start = time.monotonic()
        try:
            value = self._fn()
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise TypeError(
                    "compute returned an awaitable: Cache is synchronous, use AsyncCache"
                )
            self.value = value
        except Exception as exc:
            self.error = exc
            raise
        finally:
            self.seconds = time.monotonic() - start
        return self.value


class AsyncComputeCall(_Outcome):
    """Runs an asyncio ``compute`` at most once.

    ``compute`` is normally an ``async`` function; a plain function is accepted too (its
    result is used as is), but it then runs on the event loop and blocks it.
    """

    async def __call__(self) -> Any:
        if self.ran:
            return self._replay()
        self.ran = True
        start = time.monotonic()
        try:
            value = self._fn()
            if inspect.isawaitable(value):
                value = await value
            self.value = value
        except Exception as exc:
            self.error = exc
            raise
        finally:
            self.seconds = time.monotonic() - start
        return self.value
