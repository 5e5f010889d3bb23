"""The fail-open circuit breaker, on a fake clock."""

from __future__ import annotations

import random

from fleetcache.core.breaker import Breaker


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def test_opens_for_a_jittered_delay_then_allows_a_probe() -> None:
    """After a failure Redis is skipped for [base/2, base], then tried again."""
    clock = FakeClock()
    b = Breaker(1.0, 8.0, clock, random.Random(1))
    assert b.allow()
    delay = b.failure()
    assert 0.5 <= delay <= 1.0
    assert not b.allow()
    clock.now += delay
    assert b.allow()


def test_delay_doubles_up_to_the_cap_and_resets_on_success() -> None:
    """Consecutive failures double the delay bound up to the cap; a success resets it."""
    clock = FakeClock()
    b = Breaker(1.0, 4.0, clock, random.Random(2))
    bounds = []
    for _ in range(5):
        bounds.append(b.failure())
    assert all(lo / 2 <= d <= lo for d, lo in zip(bounds, [1, 2, 4, 4, 4], strict=True))
    b.success()
    assert b.allow()
    assert b.failures == 0
    assert b.failure() <= 1.0
