"""AsyncRefresher: stale-while-revalidate and early (XFetch) refreshes (ARCHITECTURE §3.5).

This asyncio module is the source; ``_sync/refresher.py`` is generated from it.  A hit
served stale, or picked by XFetch for an early refresh, answers at once; the refresh runs
in the background (a task, or a thread in the sync twin; at most one per key per process
and ``Policy.max_refreshes`` at once) and only when no worker fleet-wide already refreshes
the entry: it takes the entry's lease without waiting, and gives up when it is held.  It
then leads like a miss — claim, compute, write fenced — except that a newer entry found at
the claim ends it, and a failure leaves the served entry in place (logged and counted,
never raised to a caller).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fleetcache.core import envelope, freshness
from fleetcache.core._async.binding import AsyncBinding
from fleetcache.core._async.leader import AsyncLeader
from fleetcache.core.breaker import Breaker
from fleetcache.core.call import AsyncComputeCall
from fleetcache.core.keys import EntryKeys
from fleetcache.core.policy import Policy
from fleetcache.core.stats import Stats

log = logging.getLogger("fleetcache")


class AsyncRefresher:
    """Starts and runs one cache's background refreshes."""

    def __init__(
        self,
        stats: Stats,
        breaker: Breaker,
        leader: AsyncLeader,
        keys: Callable[[AsyncBinding, str], Awaitable[EntryKeys]],
        flight_key: Callable[[str], str],
    ) -> None:
        self._stats = stats
        self._breaker = breaker
        self._leader = leader
        self._keys = keys
        self._flight_key = flight_key

    def later(  # noqa: PLR0917 - the hit's whole context
        self,
        b: AsyncBinding,
        request: Any,
        digest: str,
        env: envelope.Envelope,
        verdict: freshness.Verdict,
        compute: Callable[[], Any],
        policy: Policy,
    ) -> None:
        """Served stale or early: refresh in the background, once per process and key."""
        if verdict is freshness.Verdict.STALE:
            self._stats.incr("stale_served")
        flight = self._flight_key(digest)
        refresh = functools.partial(
            self._refresh, b, flight, request, digest, env, compute, policy
        )
        started = b.background.start(flight, policy.max_refreshes, refresh)
        if started and verdict is freshness.Verdict.EARLY:
            self._stats.incr("early_refreshes")

    async def _refresh(  # noqa: PLR0917 - the hit's whole context
        self,
        b: AsyncBinding,
        flight: str,
        request: Any,
        digest: str,
        seen: envelope.Envelope,
        compute: Callable[[], Any],
        policy: Policy,
    ) -> None:
        """Refresh ``seen`` unless a worker fleet-wide already does (a non-waiting lease)."""
        if not self._breaker.allow():
            return
        try:
            keys = await self._keys(b, digest)
            lease = await b.lock.try_acquire(keys.lock, policy.lock_ttl)
            if lease is None:
                return  # another worker (or a miss's leader) is at it
            self._stats.incr("refreshes")
            await self._leader.run(
                b, flight, request, keys, lease, AsyncComputeCall(compute), policy, seen
            )
        except Exception as exc:
            self._stats.incr("refresh_failures")
            log.warning("refreshing %s failed (the entry is served as it is until it "
                        "expires): %s: %s", flight, type(exc).__name__, exc)
