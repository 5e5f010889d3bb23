"""The namespace generation a cache uses: only ever moves forward."""

from __future__ import annotations

import threading


class Generation:
    """A thread-safe "max so far" of the namespace generations seen.

    Generations only grow (DESIGN §3.1: ``max(old + 1, server time in µs)``), so whichever
    of two concurrent updates (a pub/sub announcement, a read) is larger wins.  The lock is
    held for one comparison, never across I/O: safe on an event loop too.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.value: int | None = None

    def adopt(self, gen: int) -> None:
        """Move to ``gen`` if it is newer than the current generation."""
        with self._guard:
            if self.value is None or gen > self.value:
                self.value = gen
