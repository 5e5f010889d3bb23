"""What differs between threads and asyncio at run time: hand-written pairs (ARCHITECTURE §7).

``checkpoint_async`` / ``checkpoint``: redis-py's asyncio client can swallow a task's
cancellation when it races one of its own timeouts; the task then goes on as if it had not
been cancelled.  ``checkpoint_async`` re-raises :class:`asyncio.CancelledError` when the
current task has a cancellation request pending (``Task.cancelling()``), so that a
cancelled follower or leader really stops.  Threads are not cancelled: ``checkpoint`` does
nothing.

``current_loop_async`` / ``current_loop``: the event loop an :class:`~fleetcache.AsyncCache`
is used on (it binds its connections, lock and notifier to one loop and rebinds when used
on another), and None for the thread-based :class:`~fleetcache.Cache`.
"""

from __future__ import annotations

import asyncio


def checkpoint() -> None:
    """Threads cannot be cancelled: nothing to do."""


async def checkpoint_async() -> None:
    """Raise CancelledError if this task was cancelled and the cancellation got lost."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def current_loop() -> asyncio.AbstractEventLoop | None:
    """Threads have no event loop: always None."""
    return None


def current_loop_async() -> asyncio.AbstractEventLoop | None:
    """The running event loop, or None outside one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def running_elsewhere(loop: object) -> bool:
    """True when ``loop`` is an event loop that is running (in another thread)."""
    return (
        isinstance(loop, asyncio.AbstractEventLoop) and loop.is_running() and not loop.is_closed()
    )
