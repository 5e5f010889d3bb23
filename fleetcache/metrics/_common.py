"""What the Prometheus and OpenTelemetry exporters share; imports neither library.

Counters are read from ``cache.stats.snapshot()`` when the metrics are collected (never
counted a second time); durations come through a :class:`~fleetcache.Stats` listener.
Caches registered in one registry (or meter) with the same namespace are added up: the
exported series are per process and namespace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import fields
from typing import Protocol

from fleetcache.core.stats import Stats

#: Histogram buckets in seconds: upstream calls (LLM completions take 0.1 s to minutes)
#: and follower waits (bounded by ``Policy.wait_timeout``).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)

INSTALL_HINT = "pip install 'fleetcache[metrics]'"

#: One line of help per counter of Stats (a counter added later gets a generic one).
COUNTER_HELP: dict[str, str] = {
    "hits": "Lookups that found a fresh (or stale, still servable) entry.",
    "misses": "Lookups that found no entry (or a corrupt one).",
    "upstream_calls": "Times this process ran compute.",
    "coalesced": "Callers served by another thread or task of this process.",
    "followed": "Callers served by another worker's result, through Redis.",
    "leader_failures": "Followers that got LeaderFailed.",
    "wait_timeouts": "Followers that gave up after wait_timeout.",
    "takeovers": "Followers that became leader after the previous lease expired.",
    "fail_open": "Calls answered without Redis because it was unreachable.",
    "backend_errors": "Redis outages seen (connection failures, timeouts, loading, busy).",
    "refused": "Commands a reachable Redis refused (OOM, NOPERM, READONLY, ...).",
    "notify_refused": "Writes stored whose notification PUBLISH was refused.",
    "bad_messages": "Malformed messages on the events channel (ignored).",
    "codec_errors": "Stored entries that could not be decoded (treated as misses).",
    "writes_refused": "Fenced writes refused because a newer leader had claimed the key.",
    "leases_lost": "Leases found gone while compute ran.",
    "stale_served": "Hits answered with a stale entry (within stale_ttl).",
    "refreshes": "Background refreshes this process ran (stale or early).",
    "refresh_failures": "Background refreshes whose compute or write failed.",
    "early_refreshes": "Fresh hits that started an early (XFetch) refresh.",
    "hot_promotions": "Entries this process's hits made hot.",
    "not_cached": "Values refused by cache_if.",
    "too_old": "Entries not served because they were older than max_age.",
}

UPSTREAM_HELP = "How long compute took (leaders and background refreshes), in seconds."
FOLLOWER_WAIT_HELP = (
    "How long a follower waited for another worker's result through Redis until it was "
    "served, in seconds."
)


class CacheLike(Protocol):
    """What the exporters need of a Cache or an AsyncCache."""

    @property
    def namespace(self) -> str:
        """The cache's namespace (the ``namespace`` label or attribute)."""
        ...

    @property
    def stats(self) -> Stats:
        """The cache's counters and listeners."""
        ...


def counter_names() -> list[str]:
    """Every counter of Stats, in declaration order."""
    return [f.name for f in fields(Stats) if not f.name.startswith("_")]


def counter_help(name: str) -> str:
    """The help text of counter ``name``."""
    return COUNTER_HELP.get(name, f"fleetcache Stats.{name}.")


def checked(cache: CacheLike) -> tuple[str, Stats]:
    """The namespace and stats of ``cache``; TypeError when it is no cache."""
    stats = getattr(cache, "stats", None)
    namespace = getattr(cache, "namespace", None)
    if not isinstance(stats, Stats) or not isinstance(namespace, str):
        raise TypeError(
            f"expected a fleetcache Cache or AsyncCache, not {type(cache).__name__}"
        )
    return namespace, stats


class Sources:
    """The caches one registry (or meter) exports, as (namespace, stats) pairs.

    Changed only under :data:`LOCK`; read without a lock (the tuple is replaced, never
    mutated), so a scrape never waits for, or blocks, a registration.
    """

    def __init__(self) -> None:
        self.entries: tuple[tuple[str, Stats], ...] = ()

    def add(self, namespace: str, stats: Stats) -> None:
        """Export ``stats`` under ``namespace`` too."""
        self.entries = (*self.entries, (namespace, stats))

    def remove(self, stats: Stats) -> bool:
        """Stop exporting ``stats``; True when its namespace has no other source left."""
        namespace = next((ns for ns, s in self.entries if s is stats), None)
        self.entries = tuple((ns, s) for ns, s in self.entries if s is not stats)
        return all(ns != namespace for ns, _ in self.entries)

    def totals(self) -> dict[str, dict[str, int]]:
        """Every counter per namespace, summed over the namespace's caches."""
        out: dict[str, dict[str, int]] = {}
        for namespace, stats in self.entries:
            snap = stats.snapshot()
            into = out.get(namespace)
            if into is None:
                out[namespace] = snap
            else:
                for name, value in snap.items():
                    into[name] = into.get(name, 0) + value
        return out


class Registration:
    """One cache exported to one registry or meter; :meth:`unregister` ends it.

    Also a context manager that unregisters on exit.
    """

    def __init__(self, namespace: str, detach: Callable[[], None]) -> None:
        self.namespace = namespace
        self._detach: Callable[[], None] | None = detach

    @property
    def registered(self) -> bool:
        """False once :meth:`unregister` ran."""
        return self._detach is not None

    def unregister(self) -> None:
        """Stop exporting this cache (its counters and its durations); idempotent."""
        with LOCK:
            detach, self._detach = self._detach, None
            if detach is not None:
                detach()

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unregister()

    def __repr__(self) -> str:
        state = "registered" if self.registered else "unregistered"
        return f"<fleetcache.metrics.Registration namespace={self.namespace!r} {state}>"


#: Guards every registration and unregistration of both exporters.
LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global LOCK  # noqa: PLW0603 - the parent's threads may have held it at the fork
    LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
