"""What one process knows of hot entries, so that their hits stay plain GETs (pure).

ARCHITECTURE §3.5.  Counting reads and sliding a hot entry's freshness is a script on the
hit's round trip.  Once the script said an entry is hot, this process trusts that for a
short while — at most ``slide_every`` seconds and never past the counting window — and
serves the entry's hits with a plain ``GET``, judging freshness by the slid fresh-until
the script returned.  The reads it serves meanwhile are counted here and handed to the
next script run (``INCRBY``), so the fleet-wide count stays exact, only late by at most
``slide_every``; the freshness then slides again.  A bounded number of entries is kept
(the oldest forgotten first).
"""

from __future__ import annotations

import threading
from typing import NamedTuple


class _Hot(NamedTuple):
    slid_ms: int
    trust_until: float
    pending: int


class HotKeys:
    """Entries this process saw become hot, with their slid freshness."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._guard = threading.Lock()
        self._entries: dict[str, _Hot] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def trusted(self, key: str, now: float) -> int | None:
        """The slid fresh-until (ms) of a hot ``key`` whose plain GET may serve this hit
        (the read is counted for the next script), or None: run the script."""
        hot = self._entries.get(key)
        if hot is None or now >= hot.trust_until:
            return None
        with self._guard:
            hot = self._entries.get(key)
            if hot is None or now >= hot.trust_until:
                return None
            self._entries[key] = hot._replace(pending=hot.pending + 1)
            return hot.slid_ms

    def take_pending(self, key: str) -> int:
        """Reads served by plain GETs since the last script run (now handed over)."""
        with self._guard:
            hot = self._entries.get(key)
            if hot is None or not hot.pending:
                return 0
            self._entries[key] = hot._replace(pending=0)
            return hot.pending

    def remember(self, key: str, slid_ms: int, trust_for: float, now: float) -> None:
        """The script found ``key`` hot: trust that for ``trust_for`` seconds."""
        with self._guard:
            pending = 0
            old = self._entries.pop(key, None)
            if old is not None:
                pending = old.pending
            elif len(self._entries) >= self._capacity:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = _Hot(slid_ms, now + trust_for, pending)

    def forget(self, key: str) -> None:
        """``key`` is no longer hot (or gone): its next hit runs the script."""
        with self._guard:
            self._entries.pop(key, None)
