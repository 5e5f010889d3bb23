"""Per-cache counters, kept in process memory and read with :meth:`Stats.snapshot`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class Stats:
    """What one :class:`~fleetcache.Cache` did since it was created.

    hits / misses        lookups that found a fresh entry / found none (or a corrupt one)
    upstream_calls       times this process ran ``compute``
    coalesced            callers served by another thread of this process (in-process)
    followed             callers served by another worker's result (through Redis)
    leader_failures      followers that got :class:`~fleetcache.errors.LeaderFailed`
    wait_timeouts        followers that gave up after ``wait_timeout``
    takeovers            followers that became leader after the previous lease expired
    fail_open            calls answered without Redis because it was failing
    backend_errors       Redis errors seen
    codec_errors         stored entries that could not be decoded (treated as misses)
    writes_refused       fenced writes refused because a newer leader had written
    leases_lost          leases found gone while ``compute`` ran
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
    codec_errors: int = 0
    writes_refused: int = 0
    leases_lost: int = 0
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def incr(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._guard:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of every counter."""
        with self._guard:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_guard"}
