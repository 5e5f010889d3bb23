"""Freshness rules: is an entry fresh, due for an early refresh, stale, or gone (pure).

ARCHITECTURE §3.5.  No I/O and no clock of its own: the caller passes ``now`` (wall-clock
seconds, as stored in entries) and, for XFetch, a uniform random number, so that every rule
is tested with a fake clock and a seeded random source.  Timeline of one entry::

    created          fresh_until (slid forward by hot hits)      + stale_ttl
       |----- fresh (early refresh possible) -----|---- stale ----|  gone
       |<------------------------- max_age (never served past it) ------->

"""

from __future__ import annotations

import enum
import math

from fleetcache.core.policy import Policy


class Verdict(enum.Enum):
    """What a hit does with the entry it found."""

    FRESH = "fresh"  # serve it
    EARLY = "early"  # serve it, and refresh it in the background (XFetch)
    STALE = "stale"  # serve it, and refresh it in the background (stale-while-revalidate)
    EXPIRED = "expired"  # a miss: past fresh_until + stale_ttl
    TOO_OLD = "too_old"  # a miss: older than max_age


def xfetch(now: float, fresh_until: float, compute_seconds: float, beta: float, u: float) -> bool:
    """XFetch's test: refresh when ``now − compute_seconds·β·ln(u) ≥ fresh_until``.

    ``u`` is uniform in (0, 1]; ``−ln(u)`` is exponentially distributed, so the chance of an
    early refresh at ``d`` seconds before expiry is ``exp(−d / (compute_seconds·β))``.
    """
    if beta <= 0 or compute_seconds <= 0:
        return now >= fresh_until
    return now - compute_seconds * beta * math.log(u) >= fresh_until


def judge(
    *,
    created: float,
    fresh_until: float,
    compute_seconds: float,
    now: float,
    policy: Policy,
    u: float,
) -> Verdict:
    """The verdict on an entry found at ``now`` under ``policy``.

    ``fresh_until`` is the entry's own, or the later one a hot hit slid it to.
    """
    if policy.max_age is not None and now - created >= policy.max_age:
        return Verdict.TOO_OLD
    if now < fresh_until:
        if policy.early_refresh > 0 and xfetch(
            now, fresh_until, compute_seconds, policy.early_refresh, u
        ):
            return Verdict.EARLY
        return Verdict.FRESH
    if now < fresh_until + policy.stale_ttl:
        return Verdict.STALE
    return Verdict.EXPIRED


def plain_verdict(env_created: float, fresh_until: float, now: float, policy: Policy) -> Verdict:
    """The verdict without early refresh: what a leader's double-check or a follower
    accepts of an entry someone else just wrote."""
    return judge(created=env_created, fresh_until=fresh_until, compute_seconds=0.0, now=now,
                 policy=policy, u=1.0)


def key_ttl(now: float, created: float, policy: Policy) -> float:
    """How long (seconds from ``now``) to keep a new entry in Redis: ``ttl + stale_ttl``,
    never past ``created + max_age``; at least 1 ms."""
    ttl = policy.ttl + policy.stale_ttl
    if policy.max_age is not None:
        ttl = min(ttl, created + policy.max_age - now)
    return max(0.001, ttl)
