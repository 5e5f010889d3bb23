"""Policy: every tunable of a cache, with safe defaults, validated at construction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from fleetcache.locking.checks import MAX_SECONDS, check_seconds

__all__ = ["MAX_SECONDS", "Policy"]


@dataclass(frozen=True, slots=True)
class Policy:
    """Tunables of a :class:`~fleetcache.Cache`. All durations are seconds (floats).

    Every duration must be positive, finite and at most :data:`MAX_SECONDS` (ten years:
    longer waits overflow ``threading.TIMEOUT_MAX`` and longer TTLs Redis's ``PX`` range);
    anything else raises at construction.

    ttl
        How long an entry is fresh.  The Redis key expires at the same time.
    lock_ttl
        TTL of the single-flight lease a leader holds while ``compute`` runs.  A leader
        that dies is replaced by a follower at most this long after its last renewal.
    wait_timeout
        A follower's bound on waiting for another worker's result; past it the follower
        raises :class:`~fleetcache.errors.WaitTimeout`.  Set it above your slowest
        upstream call.
    max_hold
        The longest one ``compute`` keeps its lease renewed (the watchdog extends the lease
        every ``lock_ttl/3`` while ``compute`` runs).  Past it the lease is left to expire,
        so a hung upstream call cannot hold a key forever: a follower takes over, and if
        the hung call ever returns its write is fenced.  ``None``: no bound.
    poll_interval
        Followers are woken by a pub/sub notification; as a fallback (lost message,
        dead leader) they re-check after a random interval in
        ``[poll_interval/2, poll_interval]``.  Default: a quarter of ``lock_ttl``,
        capped at 0.5 s.
    redis_timeout
        Socket connect/read timeout of the connections the cache opens (it opens its own
        pool with the connection settings of the client you pass, so that a dead Redis
        costs at most about this long and never redis-py's default retry schedule).
        ``None`` uses your client exactly as given.
    fail_open
        When Redis is unreachable, call ``compute`` directly (still coalesced within the
        process) instead of raising :class:`~fleetcache.errors.BackendError`.
    retry_backoff
        After a Redis failure the cache stops trying Redis for a random delay between
        half and all of this (doubling up to ``retry_backoff_max`` while failures go on)
        and then probes it again; calls in between fail open at once.
    retry_backoff_max
        Upper bound of that delay.  While the cache's pub/sub subscription is down, it also
        re-reads the namespace generation at most once per ``retry_backoff``.
    max_connections
        The most connections each pool the cache opens may hold (its own pool, and a copy
        of a lock's pool; the subscription is one of them); past it a caller waits, in
        arrival order, up to ``redis_timeout`` for a free one.  Default: 100, redis-py's
        own pool size.
    share_error_message
        What followers in other processes learn when a leader's ``compute`` raises:
        ``False`` (default) only the exception's type; ``True`` its message too, after
        :func:`fleetcache.core.failures.redact` masked URL query strings, credentials and
        key-like strings; a callable ``(exception) -> str`` the text it returns.  The text is
        stored in Redis for up to 10 s and raised in every follower as ``LeaderFailed``.

    Freshness (ARCHITECTURE §3.5; the README's "Freshness" section has a timeline):

    stale_ttl
        After ``ttl``, the entry is served *stale* at once for up to this long while
        exactly one worker fleet-wide refreshes it in the background.  ``0``: off.  The
        Redis key lives ``ttl + stale_ttl``.
    early_refresh
        XFetch's β (Vattani et al., VLDB 2015): on a fresh hit, refresh in the background
        when ``now − compute_seconds·β·ln(U) ≥ fresh_until`` (U uniform in (0, 1]), so
        the chance rises as expiry nears, scaled by how long the value took to compute.
        ``0``: off; ``1.0``: the paper's default.
    hot_threshold
        Reads within ``hot_window`` that make an entry *hot* (exact fixed-window count);
        each later hit in that window slides its freshness to ``now + hot_ttl`` when that
        is later (never shorter), and the Redis TTL follows.  ``None``: off.
    hot_window
        The counting window; the counter key expires with it.
    hot_ttl
        How far a hit slides a hot entry's freshness.
    max_age
        No entry older than this (since it was computed) is ever served: not hot, not
        stale, not early.  ``None``: no bound.
    cache_if
        ``(request, value) -> bool`` (see :mod:`fleetcache.cacheable`); ``False``: the value
        still goes to every caller waiting on it, in-process and fleet-wide, but is not
        stored (only a 10 s hand-off record for the followers of that computation).
    max_refreshes
        The most background refreshes one cache runs at once; a refresh due beyond it is
        skipped (the entry is served as it is; a later hit refreshes it).

    Replication (ARCHITECTURE §14):

    replica_acks
        After a leader's write, wait (Redis ``WAIT``, on the write's own connection to the
        entry's master) until this many replicas acknowledged it, at most
        ``replica_ack_timeout``; fewer acknowledgements are counted
        (``stats.replica_ack_shortfalls``) and logged, and the value is returned all the
        same.  It narrows the window in which a failover loses a fresh entry; it does not
        make Redis strongly consistent.  ``0`` (default): no wait.
    replica_ack_timeout
        The bound of that wait, in seconds.

    A per-call policy (``get_or_set(..., policy=...)``, ``get(..., policy=...)``) governs
    that call's freshness, lock, waits, cacheability and failure mode; the connections
    (``redis_timeout``, ``max_connections``) and the breaker (``retry_backoff``,
    ``retry_backoff_max``) are the cache's.
    """

    ttl: float = 3600.0
    lock_ttl: float = 10.0
    wait_timeout: float = 60.0
    max_hold: float | None = 600.0
    poll_interval: float | None = None
    redis_timeout: float | None = 1.0
    fail_open: bool = True
    retry_backoff: float = 0.5
    retry_backoff_max: float = 5.0
    max_connections: int = 100
    share_error_message: bool | Callable[[BaseException], str] = False
    stale_ttl: float = 0.0
    early_refresh: float = 0.0
    hot_threshold: int | None = None
    hot_window: float = 3600.0
    hot_ttl: float = 21600.0
    max_age: float | None = None
    cache_if: Callable[[Any, Any], bool] | None = None
    max_refreshes: int = 8
    replica_acks: int = 0
    replica_ack_timeout: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            name, value = f.name, getattr(self, f.name)
            if name == "fail_open":
                if not isinstance(value, bool):
                    raise TypeError(f"Policy.fail_open must be a bool, not {value!r}")
            elif name in _COUNTS:
                _check_count(name, value)
            elif name in _CALLABLES:
                _check_callable(name, value)
            elif value is None and name in _OPTIONAL:
                continue
            else:
                check_seconds(f"Policy.{name}", value, allow_zero=name in _MAY_BE_ZERO)
        if self.ttl < 0.001:
            raise ValueError("Policy.ttl must be at least 1 ms (Redis expiry resolution)")
        if self.lock_ttl < 0.01:
            raise ValueError("Policy.lock_ttl must be at least 10 ms")
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError("Policy.retry_backoff_max must be >= retry_backoff")
        if self.early_refresh > 100:
            raise ValueError("Policy.early_refresh (XFetch's beta) must be at most 100")
        if self.ttl + self.stale_ttl > MAX_SECONDS:
            raise ValueError(f"Policy.ttl + stale_ttl must be at most {MAX_SECONDS} s")

    @property
    def effective_poll_interval(self) -> float:
        """The fallback poll interval actually used by followers."""
        if self.poll_interval is not None:
            return self.poll_interval
        return min(self.lock_ttl / 4.0, 0.5)


#: Fields that may be None (off / no bound).
_OPTIONAL = frozenset({"poll_interval", "redis_timeout", "max_hold", "max_age", "hot_threshold"})
#: Durations that may be 0 (off).
_MAY_BE_ZERO = frozenset({"stale_ttl", "early_refresh"})
#: Positive integers (with their minimum).
_COUNTS = {"max_connections": 2, "max_refreshes": 1, "hot_threshold": 1, "replica_acks": 0}
_CALLABLES = frozenset({"share_error_message", "cache_if"})


def _check_count(name: str, value: object) -> None:
    if value is None and name in _OPTIONAL:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Policy.{name} must be an int, not {value!r}")
    if value < _COUNTS[name]:
        raise ValueError(f"Policy.{name} must be at least {_COUNTS[name]}, not {value!r}")


def _check_callable(name: str, value: object) -> None:
    if name == "share_error_message" and isinstance(value, bool):
        return
    if name == "cache_if" and value is None:
        return
    if not callable(value):
        shape = ("a bool or a callable (exception) -> str" if name == "share_error_message"
                 else "None or a callable (request, value) -> bool")
        raise TypeError(f"Policy.{name} must be {shape}, not {value!r}")
