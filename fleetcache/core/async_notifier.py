"""The asyncio notifier: one subscription task per cache, multiplexed to waiting tasks.

The twin of :class:`fleetcache.core.notifier.Notifier` (same message rules, through the
shared :class:`~fleetcache.core.notifier.Registry`): one pub/sub connection per cache, however
many tasks wait, so followers cost no connection each.  A waiting task that is cancelled
unregisters on the way out (``with notifier.waiter(key)``), leaving nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis

from fleetcache.backend import REDIS_ERRORS
from fleetcache.core.notifier import (
    PING_EVERY,
    READ_TIMEOUT,
    Registry,
    WaiterBase,
    backoff_delay,
    ping_overdue,
)

log = logging.getLogger("fleetcache.notifier")


class AsyncWaiter(WaiterBase):
    """A task's registration for one entry key's notifications."""

    __slots__ = ("_event",)

    def __init__(self, registry: Registry, key: str) -> None:
        super().__init__(registry, key)
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """Wait until notified (True) or ``timeout`` passes (False); re-arms itself."""
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def wake(self) -> None:
        """Wake the waiting task (called on the loop by the notifier task)."""
        self._event.set()

    def __enter__(self) -> AsyncWaiter:
        return self


class AsyncNotifier:
    """Owns the subscription to ``channel`` in a task on the running loop."""

    def __init__(
        self,
        client: aioredis.Redis,
        channel: str,
        on_connect: Callable[[], Any],
        on_generation: Callable[[int], None],
        *,
        backoff: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_connect = on_connect
        self._backoff = backoff
        self._backoff_max = backoff_max
        self.registry = Registry(on_generation)
        self._healthy = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    @property
    def healthy(self) -> bool:
        """True while subscribed: notifications are being delivered."""
        return self._healthy.is_set() and self._task is not None and not self._task.done()

    async def start(self, timeout: float) -> bool:
        """Start the task if needed; wait up to ``timeout`` for the subscription."""
        if self._task is None or self._task.done():
            self._healthy = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"fleetcache-notifier:{self._channel}"
            )
        try:
            async with asyncio.timeout(timeout):
                await self._healthy.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Cancel the task and wait for it (its connection is closed on the way out)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        self._healthy.clear()

    def waiter(self, key: str) -> AsyncWaiter:
        """Register for ``key``'s notifications (register before looking at Redis)."""
        w = AsyncWaiter(self.registry, key)
        self.registry.add(key, w)
        return w

    def waiting(self) -> int:
        """How many waiters are registered."""
        return self.registry.waiting()

    async def _run(self) -> None:
        failures = 0
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._session(pubsub)
                failures = 0
            except REDIS_ERRORS as exc:
                failures += 1
                log.debug("notifier connection failed (%s); reconnecting", exc)
            finally:
                if self._healthy.is_set():
                    self.reconnects += 1
                self._healthy.clear()
                self.registry.wake(None)
                with contextlib.suppress(*REDIS_ERRORS):
                    await asyncio.shield(pubsub.aclose())
            if failures:
                await asyncio.sleep(backoff_delay(failures, self._backoff, self._backoff_max))

    async def _session(self, pubsub: aioredis.client.PubSub) -> None:
        await pubsub.subscribe(self._channel)
        subscribed = False
        last_pong = time.monotonic()
        next_ping = last_pong + PING_EVERY
        while True:
            msg = await pubsub.get_message(timeout=READ_TIMEOUT)
            now = time.monotonic()
            if msg is not None:
                mtype = msg["type"]
                if mtype == "message":
                    self.registry.dispatch(msg["data"])
                elif mtype == "subscribe" and not subscribed:
                    subscribed = True
                    await self._on_connect()
                    self._healthy.set()
                    self.registry.wake(None)
                elif mtype == "pong":
                    last_pong = now
            if now >= next_ping:
                if ping_overdue(now, last_pong):
                    raise aioredis.TimeoutError("notifier: no PONG from Redis")
                await pubsub.ping()
                next_ping = now + PING_EVERY
