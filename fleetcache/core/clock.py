"""Clocks: the real one, and the interface the pure decision functions take."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where time comes from: ``monotonic`` for durations, ``time`` for stored stamps."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (durations, deadlines)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (stored in entries, shared across machines)."""
        ...


class SystemClock:
    """The process's real clocks."""

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def time(self) -> float:
        """Return :func:`time.time`."""
        return time.time()


SYSTEM_CLOCK = SystemClock()
