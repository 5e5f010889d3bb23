"""The freshness rules (pure): verdicts, XFetch's probability, the key's TTL."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetcache import Policy
from fleetcache.core.freshness import Verdict, judge, key_ttl, xfetch

T0 = 1_800_000_000.0  # a fake wall clock


def verdict(now: float, policy: Policy, *, created: float = T0, fresh: float = T0 + 10,
            compute: float = 0.5, u: float = 1.0) -> Verdict:
    """judge() of an entry created at T0, fresh for 10 s, computed in 0.5 s."""
    return judge(created=created, fresh_until=fresh, compute_seconds=compute, now=now,
                 policy=policy, u=u)


def test_timeline_fresh_stale_gone() -> None:
    """Fresh until fresh_until, stale for stale_ttl after it, then expired."""
    policy = Policy(ttl=10, stale_ttl=5)
    assert verdict(T0 + 9.99, policy) is Verdict.FRESH
    assert verdict(T0 + 10.0, policy) is Verdict.STALE
    assert verdict(T0 + 14.99, policy) is Verdict.STALE
    assert verdict(T0 + 15.0, policy) is Verdict.EXPIRED
    assert verdict(T0 + 10.0, Policy(ttl=10)) is Verdict.EXPIRED  # no stale window


def test_max_age_beats_every_other_rule() -> None:
    """Past max_age an entry is never served: not fresh (even slid far ahead), not stale."""
    policy = Policy(ttl=10, stale_ttl=100, max_age=20, early_refresh=1.0)
    assert verdict(T0 + 19.9, policy, fresh=T0 + 1000) is Verdict.FRESH
    assert verdict(T0 + 20.0, policy, fresh=T0 + 1000) is Verdict.TOO_OLD
    assert verdict(T0 + 50, policy) is Verdict.TOO_OLD


def test_u_of_one_never_refreshes_early() -> None:
    """ln(1) = 0: with U = 1 a fresh entry is never refreshed early."""
    policy = Policy(ttl=10, early_refresh=1.0)
    assert verdict(T0 + 9.999, policy, u=1.0) is Verdict.FRESH


def test_xfetch_follows_the_formula() -> None:
    """The early-refresh test is exactly now − compute·β·ln(U) ≥ fresh_until."""
    rng = random.Random(7)
    for _ in range(1000):
        now = T0 + rng.uniform(0, 10)
        u = 1.0 - rng.random()
        beta = rng.choice([0.5, 1.0, 2.0])
        compute = rng.uniform(0.01, 2.0)
        expected = now - compute * beta * math.log(u) >= T0 + 10
        assert xfetch(now, T0 + 10, compute, beta, u) is expected
        got = verdict(now, Policy(ttl=10, early_refresh=beta), compute=compute, u=u)
        assert got is (Verdict.EARLY if expected else Verdict.FRESH)


@pytest.mark.parametrize("remaining", [0.1, 0.5, 1.0, 2.0])
def test_xfetch_probability_matches_exp(remaining: float) -> None:
    """With a seeded random source, the share of early refreshes at ``d`` seconds before
    expiry is exp(−d / (compute·β)) within sampling error."""
    rng = random.Random(20261201)
    compute, beta, n = 0.5, 1.0, 20_000
    hits = sum(xfetch(T0 + 10 - remaining, T0 + 10, compute, beta, 1.0 - rng.random())
               for _ in range(n))
    p = math.exp(-remaining / (compute * beta))
    assert abs(hits / n - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3


def test_no_compute_time_or_beta_means_no_early_refresh() -> None:
    """An entry with no compute time (cache.set) or β = 0 is only refreshed when expired."""
    assert not xfetch(T0 + 9.9, T0 + 10, 0.0, 1.0, 1e-9)
    assert not xfetch(T0 + 9.9, T0 + 10, 1.0, 0.0, 1e-9)
    assert xfetch(T0 + 10, T0 + 10, 0.0, 1.0, 0.5)


@given(now=st.floats(min_value=0, max_value=100), ttl=st.floats(min_value=0.01, max_value=50),
       stale=st.floats(min_value=0, max_value=50))
def test_key_ttl_covers_the_stale_window(now: float, ttl: float, stale: float) -> None:
    """The key lives ttl + stale_ttl from its creation: long enough to be served stale."""
    policy = Policy(ttl=ttl, stale_ttl=stale)
    assert key_ttl(T0 + now, T0 + now, policy) == pytest.approx(ttl + stale)


def test_key_ttl_never_outlives_max_age() -> None:
    """With max_age below ttl + stale_ttl the key expires at created + max_age."""
    policy = Policy(ttl=10, stale_ttl=100, max_age=30)
    assert key_ttl(T0, T0, policy) == pytest.approx(30)
    assert key_ttl(T0 + 5, T0, policy) == pytest.approx(25)
    assert key_ttl(T0 + 40, T0, policy) == pytest.approx(0.001)


@pytest.mark.parametrize(("field", "value", "exc"), [
    ("stale_ttl", -1, ValueError), ("early_refresh", -0.5, ValueError),
    ("early_refresh", 1000, ValueError), ("hot_threshold", 0, ValueError),
    ("hot_threshold", 2.5, TypeError), ("hot_window", 0, ValueError),
    ("hot_ttl", math.inf, ValueError), ("max_age", 0, ValueError),
    ("cache_if", "yes", TypeError), ("max_refreshes", 0, ValueError),
])
def test_bad_freshness_fields_raise(field: str, value: object, exc: type[Exception]) -> None:
    """Every freshness field is validated when the Policy is built."""
    with pytest.raises(exc):
        Policy(**{field: value})  # type: ignore[arg-type]
