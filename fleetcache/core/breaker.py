"""The fail-open circuit breaker: after a Redis failure, stop trying Redis for a while."""

from __future__ import annotations

import random
import threading

from fleetcache.core.clock import SYSTEM_CLOCK, Clock


class Breaker:
    """Opens on a failure for a random delay in ``[d/2, d]``, ``d`` doubling per failure.

    ``d`` starts at ``base`` and is capped at ``cap``; one success closes the breaker and
    resets ``d``.  While open, :meth:`allow` is False and callers skip Redis; the first
    caller after the delay probes Redis again.
    """

    def __init__(
        self, base: float, cap: float, clock: Clock = SYSTEM_CLOCK, rng: random.Random | None = None
    ) -> None:
        self._base = base
        self._cap = cap
        self._clock = clock
        self._rng = rng or random.Random()
        self._guard = threading.Lock()
        self._failures = 0
        self._open_until = 0.0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._failures

    def allow(self) -> bool:
        """True when Redis may be tried (closed, or the open delay has passed)."""
        return self._clock.monotonic() >= self._open_until

    def failure(self) -> float:
        """Record a failure; return how long the breaker stays open."""
        with self._guard:
            self._failures += 1
            delay = min(self._cap, self._base * 2 ** (self._failures - 1))
            delay = self._rng.uniform(delay / 2, delay)
            self._open_until = self._clock.monotonic() + delay
            return delay

    def success(self) -> None:
        """Record a success: close the breaker."""
        if self._failures:
            with self._guard:
                self._failures = 0
                self._open_until = 0.0
