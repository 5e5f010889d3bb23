"""The asyncio notifier: one subscription task per cache, multiplexed to waiting tasks.

The twin of :class:`fleetcache.core.notifier.Notifier` (same message rules, through the
shared :class:`~fleetcache.core.notifier.Registry`, same survival rules: any failure ends a
session, never the task; a task that ends anyway is restarted by :meth:`ensure_running`).
One pub/sub connection per cache, however many tasks wait, so followers cost no
connection each.  A waiting task that is cancelled unregisters on the way out
(``with notifier.waiter(key)``), leaving nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from redis import asyncio as aioredis

from fleetcache.backend import AsyncClient
from fleetcache.clusters import AsyncClusterSubscriber
from fleetcache.core.notifier import (
    PING_EVERY,
    READ_TIMEOUT,
    Registry,
    SessionLog,
    WaiterBase,
    backoff_delay,
    ping_overdue,
)


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
        client: AsyncClient | AsyncClusterSubscriber,
        channel: str,
        on_connect: Callable[[], Awaitable[None]],
        on_generation: Callable[[int], Awaitable[None]],
        *,
        on_bad_message: Callable[[], None] | None = None,
        backoff: float = 0.05,
        backoff_max: float = 2.0,
        refused_backoff_max: float = 30.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_connect = on_connect
        self._on_generation = on_generation
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._refused_backoff_max = refused_backoff_max
        self.registry = Registry(on_bad_message)
        self._healthy = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._log = SessionLog(channel)
        #: Consecutive failed sessions (0 while healthy, or before the first attempt ends).
        self.failures = 0
        self.reconnects = 0

    @property
    def healthy(self) -> bool:
        """True while subscribed: notifications are being delivered."""
        return self._healthy.is_set() and self._task is not None and not self._task.done()

    def ensure_running(self) -> None:
        """Start the task if it is not running (never started, stopped, or ended)."""
        if self._task is None or self._task.done():
            self._healthy.clear()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"fleetcache-notifier:{self._channel}"
            )

    async def wait_healthy(self, timeout: float) -> bool:
        """True once subscribed; waits up to ``timeout`` only while a first attempt is
        under way, never while the subscription is failing (callers then poll)."""
        if self.healthy:
            return True
        self.ensure_running()
        if self.failures:
            return False
        try:
            async with asyncio.timeout(timeout):
                await self._healthy.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Cancel the task and wait for it (its connection is closed on the way out)."""
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            # A cancellation can be swallowed inside redis-py (racing one of its timeouts):
            # cancel again until the task has really ended.
            await asyncio.wait([task], timeout=0.1)
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
        while True:
            pubsub = None
            try:
                pubsub = self._client.pubsub()
                await self._session(pubsub)
            except Exception as exc:  # the task must outlive any failure of a session
                self.failures += 1
                self._log.failed(exc)
                cap = self._refused_backoff_max if SessionLog.refused(exc) else self._backoff_max
                delay = backoff_delay(self.failures, self._backoff, cap)
            else:
                delay = 0.0
            finally:
                if self._healthy.is_set():
                    self.reconnects += 1
                self._healthy.clear()
                self.registry.wake(None)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(pubsub.aclose())
            if delay:
                await asyncio.sleep(delay)

    async def _session(self, pubsub: aioredis.client.PubSub) -> None:
        await pubsub.subscribe(self._channel)
        subscribed = False
        last_pong = time.monotonic()
        next_ping = last_pong + PING_EVERY
        while True:
            msg = await pubsub.get_message(timeout=READ_TIMEOUT)
            now = time.monotonic()
            if msg is not None:
                mtype = msg.get("type")
                if mtype == "message":
                    hint = self.registry.dispatch(msg.get("data"))
                    if hint is not None:
                        await self._on_generation(hint)
                elif mtype == "subscribe" and not subscribed:
                    subscribed = True
                    await self._on_connect()
                    self.failures = 0
                    self._log.recovered()
                    self._healthy.set()
                    self.registry.wake(None)
                elif mtype == "pong":
                    last_pong = now
            if now >= next_ping:
                if ping_overdue(now, last_pong):
                    raise aioredis.TimeoutError("notifier: no PONG from Redis")
                await pubsub.ping()
                next_ping = now + PING_EVERY
