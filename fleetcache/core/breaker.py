"""The fail-open circuit breaker: after Redis fails, stop trying it for a while (ARCHITECTURE §8).

Only an *outage* opens it: a connection that fails, a timeout, a server that is loading or
busy.  A command that a healthy Redis refuses (OOM, NOPERM, READONLY, a wrong type) is
not an outage and never opens it (see :func:`fleetcache.backend.is_outage`).
"""

from __future__ import annotations

import random
import threading

from fleetcache.core.clock import SYSTEM_CLOCK, Clock


class Breaker:
    """Opens on a failure for a random delay in ``[d/2, d]``, ``d`` doubling per failure.

    ``d`` starts at ``base`` and is capped at ``cap``; one success closes the breaker and
    resets ``d``.  While open, :meth:`allow` is False and callers skip Redis.  When the
    delay has passed the breaker is *half-open*: exactly one caller is allowed through to
    probe Redis; the others keep skipping it until that probe reports a success (closed)
    or a failure (open again, longer), or until ``probe_timeout`` passes without a report
    (the prober died: the next caller probes).
    """

    def __init__(
        self,
        base: float,
        cap: float,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        *,
        probe_timeout: float = 3.0,
    ) -> None:
        self._base = base
        self._cap = cap
        self._clock = clock
        self._rng = rng or random.Random()
        self._probe_timeout = probe_timeout
        self._guard = threading.Lock()
        self._failures = 0
        self._open_until = 0.0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._failures

    @property
    def is_open(self) -> bool:
        """True while callers skip Redis (open, or half-open with a probe under way)."""
        return self._failures > 0 and self._clock.monotonic() < self._open_until

    def allow(self) -> bool:
        """True when this caller may use Redis: closed, or the one probe when half-open."""
        if not self._failures:
            return True
        now = self._clock.monotonic()
        if now < self._open_until:
            return False
        with self._guard:
            if not self._failures:
                return True
            if now < self._open_until:  # another caller took the probe meanwhile
                return False
            self._open_until = now + self._probe_timeout
            return True

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

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held)."""
        self._guard = threading.Lock()
