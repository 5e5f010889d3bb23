"""AsyncGenerations: the namespace generation as one cache knows it (ARCHITECTURE §3.1, §9).

This asyncio module is the source; ``_sync/generations.py`` is generated from it.  The
generation is cached in the process and only ever adopted from Redis: a script's reply, a
``GET`` of the key — never from a message, which is only a hint to read the key.  While the
cache's subscription is down the key is re-read at most once per ``recheck`` seconds, and
nobody waits for the subscription to come back.
"""

from __future__ import annotations

from fleetcache.core._async.store import AsyncStore
from fleetcache.core.async_notifier import AsyncNotifier
from fleetcache.core.clock import Clock
from fleetcache.core.generation import Generation
from fleetcache.errors import CommandRefused


class AsyncGenerations:
    """Reads, heals and announces one namespace's generation for one cache."""

    def __init__(self, clock: Clock, recheck: float) -> None:
        self.known = Generation()
        self._clock = clock
        self._recheck = recheck

    @property
    def value(self) -> int | None:
        """The generation in use (None before the first read)."""
        return self.known.value

    async def current(self, store: AsyncStore, notifier: AsyncNotifier) -> int:
        """The generation to use now: the cached one while subscribed; otherwise (re)start
        the subscription without waiting for it and re-read the key when it is due."""
        gen = self.known.value
        if gen is not None and notifier.healthy:
            return gen
        notifier.ensure_running()
        if gen is None or self.known.due(self._clock.monotonic(), self._recheck):
            return await self.read(store)
        return gen

    async def read(self, store: AsyncStore) -> int:
        """Read the key; create it when missing, raise it to ours when it went back."""
        known = self.known.value
        gen = await store.read_generation()
        if gen is None or (known is not None and gen < known):
            gen = await store.ensure_generation(known)
        self.known.adopt(gen)
        current = self.known.value
        assert current is not None
        return current

    async def on_subscribed(self, store: AsyncStore) -> None:
        """After every (re)subscription: refresh the key's TTL and adopt it, healing it to
        ours if a failover took it back; on a read-only replica (or OOM), just read it.
        On a cluster, also learn whether its servers have sharded pub/sub."""
        await store.check_sharding()
        try:
            gen = await store.ensure_generation(self.known.value)
        except CommandRefused:
            read = await store.read_generation()
            if read is None:
                raise
            gen = read
        self.known.adopt(gen)

    async def on_hint(self, store: AsyncStore, hint: int) -> None:
        """A message announced generation ``hint``: adopt only what Redis confirms."""
        current = self.known.value
        if current is not None and hint <= current:
            return
        gen = await store.read_generation()
        if gen is not None:
            self.known.adopt(gen)

    async def invalidate(self, store: AsyncStore) -> int:
        """Move the namespace past every generation this process has seen."""
        gen = await store.invalidate(self.known.value)
        self.known.adopt(gen)
        return gen
