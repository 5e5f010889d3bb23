"""Per-cache counters, kept in process memory and read with :meth:`Stats.snapshot`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class Stats:
    """What one :class:`~fleetcache.Cache` did in this process since it was created.

    hits / misses        lookups that found a fresh entry / found none (or a corrupt one)
    upstream_calls       times this process ran ``compute``
    coalesced            callers served by another thread of this process (in-process)
    followed             callers served by another worker's result (through Redis)
    leader_failures      followers that got :class:`~fleetcache.errors.LeaderFailed`
    wait_timeouts        followers that gave up after ``wait_timeout``
    takeovers            followers that became leader after the previous lease expired
    fail_open            calls answered without Redis because it was unreachable
    backend_errors       Redis outages seen (connection failures, timeouts, loading, busy)
    refused              commands a reachable Redis refused (OOM, NOPERM, READONLY, ...):
                         the call goes on without that command; the breaker stays closed
    notify_refused       writes stored but whose notification PUBLISH was refused (ACL)
    bad_messages         malformed messages on the events channel (ignored)
    codec_errors         stored entries that could not be decoded (treated as misses)
    writes_refused       fenced writes refused because a newer leader had claimed the key
    leases_lost          leases found gone while ``compute`` ran
    stale_served         hits answered with a stale entry (within ``stale_ttl``)
    refreshes            background refreshes this process ran (stale or early)
    refresh_failures     background refreshes whose compute or write failed
    early_refreshes      fresh hits that started an early (XFetch) refresh
    hot_promotions       entries this process's hits made hot (once per window)
    not_cached           values refused by ``cache_if`` (handed to the waiting callers only)
    too_old              entries not served because they were older than ``max_age``

    A forked child starts with every counter at zero (its own process's counts).
    """

    hits: int = 0
    misses: int = 0
    upstream_calls: int = 0
    coalesced: int = 0
    followed: int = 0
    leader_failures: int = 0
    wait_timeouts: int = 0
    takeovers: int = 0
    fail_open: int = 0
    backend_errors: int = 0
    refused: int = 0
    notify_refused: int = 0
    bad_messages: int = 0
    codec_errors: int = 0
    writes_refused: int = 0
    leases_lost: int = 0
    stale_served: int = 0
    refreshes: int = 0
    refresh_failures: int = 0
    early_refreshes: int = 0
    hot_promotions: int = 0
    not_cached: int = 0
    too_old: int = 0
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def incr(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._guard:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of every counter."""
        with self._guard:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_guard"}

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock and every counter back to zero."""
        self._guard = threading.Lock()
        for f in fields(self):
            if f.name != "_guard":
                setattr(self, f.name, 0)
