"""One run of the user's ``compute``: remembers whether it ran, its value or its error."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class ComputeCall:
    """Runs ``compute`` at most once and remembers the outcome.

    The cache may reach the fail-open path after ``compute`` already ran (say Redis died
    during the write); it then returns the remembered value (or re-raises the remembered
    error) instead of calling upstream a second time.
    """

    __slots__ = ("_fn", "error", "ran", "seconds", "value")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self.ran = False
        self.value: Any = None
        self.error: Exception | None = None
        self.seconds = 0.0

    def __call__(self) -> Any:
        if self.ran:
            if self.error is not None:
                raise self.error
            return self.value
        self.ran = True
        start = time.monotonic()
        try:
            self.value = self._fn()
        except Exception as exc:
            self.error = exc
            raise
        finally:
            self.seconds = time.monotonic() - start
        return self.value
