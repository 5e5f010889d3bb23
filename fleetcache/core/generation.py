"""The namespace generation a cache uses: only ever moves forward (ARCHITECTURE §3.1)."""

from __future__ import annotations

import threading


class Generation:
    """A thread-safe "max so far" of the namespace generations read from Redis.

    Generations only grow (``max(old + 1, server time in µs)``), so whichever of two
    concurrent updates is larger wins.  Only values that Redis itself returned are adopted
    (a message on the events channel is a hint to read the key, ARCHITECTURE §9).  The lock
    is held for one comparison, never across I/O: safe on an event loop too.

    While the cache's subscription is down, the generation is re-read from Redis at most
    once per period in each process: :meth:`due` hands that re-read to one caller.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.value: int | None = None
        self._next_read = 0.0

    def adopt(self, gen: int) -> bool:
        """Move to ``gen`` if it is newer than the current generation; True if it was."""
        with self._guard:
            if self.value is None or gen > self.value:
                self.value = gen
                return True
            return False

    def due(self, now: float, period: float) -> bool:
        """True for one caller per ``period``: that caller re-reads the generation."""
        if now < self._next_read:
            return False
        with self._guard:
            if now < self._next_read:
                return False
            self._next_read = now + period
            return True

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held)."""
        self._guard = threading.Lock()
