"""Background refreshes: a hand-written pair (ARCHITECTURE §7), threads or tasks.

A hit that finds its entry stale (or due for an early refresh) answers at once and leaves
the refresh to the background: :class:`Background` runs it in a thread, :class:`AsyncBackground`
in a task of the cache's event loop.  Both keep at most one refresh per key and at most
``limit`` at once in the process (past it a refresh is skipped: the entry is served as it
is and a later hit refreshes it), and ``stop()`` waits for the running ones, bounded
(threads cannot be cancelled; tasks still running after the bound are cancelled).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any


class Background:
    """Refreshes running in threads, one per key."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}

    def __len__(self) -> int:
        with self._guard:
            return len(self._threads)

    def start(self, key: str, limit: int, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` in a thread unless ``key`` already runs or ``limit`` are running."""
        with self._guard:
            if key in self._threads or len(self._threads) >= limit:
                return False
            thread = threading.Thread(
                target=self._run, args=(key, fn), name=f"fleetcache-refresh:{key}", daemon=True
            )
            self._threads[key] = thread
        thread.start()
        return True

    def _run(self, key: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        finally:
            with self._guard:
                self._threads.pop(key, None)

    def stop(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the running refreshes; True when none is left."""
        deadline = time.monotonic() + timeout
        with self._guard:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return len(self) == 0


class AsyncBackground:
    """Refreshes running as tasks of one event loop, one per key."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, key: str, limit: int, fn: Callable[[], Awaitable[Any]]) -> bool:
        """Run ``fn()`` as a task unless ``key`` already runs or ``limit`` are running."""
        if key in self._tasks or len(self._tasks) >= limit:
            return False
        task = asyncio.get_running_loop().create_task(
            _awaited(fn), name=f"fleetcache-refresh:{key}"
        )
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))
        return True

    async def stop(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the running refreshes, then cancel the rest; True
        when all had ended by themselves."""
        tasks = list(self._tasks.values())
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        return not pending


async def _awaited(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()
