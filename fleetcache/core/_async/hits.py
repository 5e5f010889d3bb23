"""AsyncHitPath: a hit in one round trip, and its freshness verdict (ARCHITECTURE §3.5).

This asyncio module is the source; ``_sync/hits.py`` is generated from it.  A hit is one
``GET`` of the entry in the current generation — or, with hot keys on, the ``hit.lua``
script that also counts the read and slides a hot entry's freshness, except for entries
this process already knows are hot (:mod:`fleetcache.core.hotkeys`: plain ``GET``s for up
to a second, counted at the next script run).  Then the entry is judged
(:mod:`fleetcache.core.freshness`): fresh, early, stale — or a miss.
"""

from __future__ import annotations

import random
from typing import Any

from fleetcache.core import envelope, freshness
from fleetcache.core._async.binding import AsyncBinding
from fleetcache.core._async.generations import AsyncGenerations
from fleetcache.core._async.leader import decode_entry, ms
from fleetcache.core.clock import Clock
from fleetcache.core.keys import KeyLayout
from fleetcache.core.policy import Policy
from fleetcache.core.stats import Stats

#: A process slides a hot entry's freshness (one script run) at most this often; its hits
#: in between are plain GETs, counted at the next run.
HOT_SLIDE_EVERY = 1.0

#: A lookup's result: the entry and what to do with it, or None for a miss.
Found = tuple[envelope.Envelope, freshness.Verdict]


class AsyncHitPath:
    """Looks entries up for one cache."""

    def __init__(
        self, stats: Stats, clock: Clock, layout: KeyLayout, gen: AsyncGenerations
    ) -> None:
        self._stats = stats
        self._clock = clock
        self._layout = layout
        self._gen = gen
        self._random = random.Random()

    async def lookup(self, b: AsyncBinding, digest: str, policy: Policy) -> Found | None:
        """The hit path, one round trip: a GET, or the hot-key script when hot keys are on;
        then the freshness verdict (ARCHITECTURE §3.5)."""
        gen = self._gen.value
        if gen is None or not b.notifier.healthy:
            gen = await self._gen.current(b.store, b.notifier)
        key = self._layout.value_key(digest, gen)
        slid: int | None = 0
        if policy.hot_threshold is not None:
            slid = b.hot.trusted(key, self._clock.monotonic())
        if slid is not None:  # hot keys off, or known hot: a plain GET
            raw = await b.store.get(key)
            if raw is None and slid:
                b.hot.forget(key)
        else:
            raw, slid = await self._counted_hit(b, key, digest, gen, policy)
        env = decode_entry(self._stats, key, raw)
        if env is None:
            return None
        verdict = freshness.judge(
            created=env.created,
            fresh_until=max(env.fresh_until, slid / 1000),
            compute_seconds=env.compute_seconds,
            now=self._clock.time(),
            policy=policy,
            u=1.0 - self._random.random(),
        )
        if verdict is freshness.Verdict.TOO_OLD:
            self._stats.incr("too_old")
            return None
        if verdict is freshness.Verdict.EXPIRED:
            return None
        return env, verdict

    async def _counted_hit(
        self, b: AsyncBinding, key: str, digest: str, gen: int, policy: Policy
    ) -> tuple[Any, int]:
        """The hot-key script: count this read (and those served by plain GETs since),
        slide a hot entry's freshness; remember a hot entry for a while (HotKeys)."""
        threshold = policy.hot_threshold
        assert threshold is not None
        reads = 1 + b.hot.take_pending(key)
        raw, slid, count, left = await b.store.hit(
            self._layout.entry(digest, gen),
            threshold=threshold,
            window_ms=ms(policy.hot_window),
            hot_ttl_ms=ms(policy.hot_ttl),
            stale_ms=ms(policy.stale_ttl) if policy.stale_ttl else 0,
            max_age_ms=None if policy.max_age is None else ms(policy.max_age),
            reads=reads,
        )
        if raw is None or count < threshold:
            b.hot.forget(key)
            return raw, slid
        if count - reads < threshold:  # this run crossed the threshold
            self._stats.incr("hot_promotions")
        trust = min(HOT_SLIDE_EVERY, policy.hot_ttl / 100, left / 1000)
        b.hot.remember(key, slid, trust, self._clock.monotonic())
        return raw, slid

