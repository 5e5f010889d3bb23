"""What a call does when Redis fails it: an outage or a refusal, fail open or closed.

ARCHITECTURE §8.  An *outage* (:class:`~fleetcache.errors.BackendError`) opens the
breaker; a *refused command* (:class:`~fleetcache.errors.CommandRefused`, an error reply
from a Redis that is up) is counted and logged once a minute per kind, and leaves the
breaker closed.  Either way the call goes on without Redis when ``Policy.fail_open``,
and raises otherwise.
"""

from __future__ import annotations

import logging

from fleetcache.core.breaker import Breaker
from fleetcache.core.miss import MISS, Missing
from fleetcache.core.policy import Policy
from fleetcache.core.stats import Stats
from fleetcache.core.throttle import Throttle
from fleetcache.errors import BackendError, CommandRefused

log = logging.getLogger("fleetcache")


class FailMode:
    """One cache's handling of Redis failures."""

    def __init__(self, stats: Stats, breaker: Breaker, refusals: Throttle) -> None:
        self._stats = stats
        self.breaker = breaker
        self._refusals = refusals

    def degraded(self, exc: BackendError, policy: Policy) -> None:
        """Redis failed this call: count it, open the breaker on an outage, and raise
        unless the policy fails open (the call then goes on without Redis)."""
        if isinstance(exc, CommandRefused):
            self._stats.incr("refused")
            self.breaker.success()  # it answered: reachable
            if self._refusals.allow(exc.reply):
                log.warning("Redis refused a command (%s); going on without it", exc)
        else:
            self._stats.incr("backend_errors")
            self._stats.incr("fail_open")
            delay = self.breaker.failure()
            log.warning("Redis unavailable (%s); skipping it for %.2fs", exc, delay)
        if not policy.fail_open:
            raise exc

    def skipped(self, policy: Policy) -> Missing:
        """The breaker is open: answer without Redis, or raise when failing closed."""
        if not policy.fail_open:
            raise BackendError("Redis unavailable (recent failures; retrying soon)")
        self._stats.incr("fail_open")
        return MISS
