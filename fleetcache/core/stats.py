"""Per-cache counters, kept in process memory and read with :meth:`Stats.snapshot`, and
the durations the cache observes, handed to listeners (:meth:`Stats.add_listener`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields

log = logging.getLogger("fleetcache")

#: A listener of observed durations: called with ``(name, seconds)``.
Listener = Callable[[str, float], None]

#: How long a ``compute`` run by this process took (a leader's, a background refresh's),
#: whether it returned or raised.  Computes run on the fail-open path are not observed.
UPSTREAM_SECONDS = "upstream_seconds"
#: How long a follower of this process waited, from its first failed try of the lease to
#: being served another worker's result through Redis.  Served followers only (as many as
#: ``followed``): ``wait_timeouts``, ``leader_failures`` and ``takeovers`` are not observed.
FOLLOWER_WAIT_SECONDS = "follower_wait_seconds"


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
    replica_ack_shortfalls  writes that fewer replicas than ``Policy.replica_acks``
                         acknowledged within ``replica_ack_timeout``

    Durations are not kept here: :meth:`observe` hands them (:data:`UPSTREAM_SECONDS`,
    :data:`FOLLOWER_WAIT_SECONDS`) to the listeners registered with :meth:`add_listener`
    (``fleetcache.metrics`` feeds its histograms that way); with none it costs one check.

    A forked child starts with every counter at zero (its own process's counts) and keeps
    the listeners: the metrics registries they feed live on in the child too.
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
    replica_ack_shortfalls: int = 0
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # Replaced, never mutated: observe() reads it without the lock.
    _listeners: tuple[Listener, ...] = field(default=(), repr=False, compare=False)
    # ids of listeners whose failure was logged already (logged once each).
    _failed: set[int] = field(default_factory=set, repr=False, compare=False)

    def incr(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._guard:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of every counter."""
        with self._guard:
            return {f.name: getattr(self, f.name) for f in fields(self)
                    if not f.name.startswith("_")}

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(name, seconds)`` for every duration observed from now on.

        ``fn`` runs in the thread (or on the event loop) of the call that observed, so it
        must be quick and must not block; an exception it raises is logged (once, at debug
        level) and otherwise ignored.  Adding the same listener twice calls it twice.
        """
        if not callable(fn):
            raise TypeError(f"listener must be callable, not {type(fn).__name__}")
        with self._guard:
            self._listeners = (*self._listeners, fn)

    def remove_listener(self, fn: Listener) -> None:
        """Stop calling ``fn`` (one registration of it); ValueError if it is not there."""
        with self._guard:
            listeners = list(self._listeners)
            for i, known in enumerate(listeners):
                if known is fn or known == fn:  # == : bound methods are new objects
                    del listeners[i]
                    break
            else:
                raise ValueError(f"{fn!r} is not a listener of these stats")
            self._listeners = tuple(listeners)
            self._failed.discard(id(known))

    def observe(self, name: str, seconds: float) -> None:
        """Hand the duration ``name`` (e.g. :data:`UPSTREAM_SECONDS`) to every listener.

        Never raises: a listener that fails is logged once and skipped.
        """
        listeners = self._listeners
        if not listeners:
            return
        for fn in listeners:
            try:
                fn(name, seconds)
            except Exception:
                if id(fn) not in self._failed:
                    self._failed.add(id(fn))
                    log.debug("stats listener %r failed on %s (ignored; logged once)",
                              fn, name, exc_info=True)

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock and every counter back to zero; the listeners
        stay (what they feed was copied into the child too)."""
        self._guard = threading.Lock()
        for f in fields(self):
            if not f.name.startswith("_"):
                setattr(self, f.name, 0)
