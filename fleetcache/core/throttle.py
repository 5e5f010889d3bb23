"""Rate-limited warnings: a failure that repeats on every call is logged once a period."""

from __future__ import annotations

import threading
import time


class Throttle:
    """``allow(kind)`` is True at most once per ``period`` seconds for each ``kind``."""

    def __init__(self, period: float) -> None:
        self._period = period
        self._guard = threading.Lock()
        self._next: dict[str, float] = {}

    def allow(self, kind: str) -> bool:
        """True when a message of ``kind`` may be logged now."""
        now = time.monotonic()
        with self._guard:
            if now < self._next.get(kind, 0.0):
                return False
            self._next[kind] = now + self._period
            return True
