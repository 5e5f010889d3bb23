"""Cancellation checkpoints: a hand-written pair (DESIGN §5).

redis-py's asyncio client can swallow a task's cancellation when it races one of its own
timeouts: the task then goes on as if it had not been cancelled.  ``checkpoint_async``
re-raises :class:`asyncio.CancelledError` when the current task has a cancellation request
pending (``Task.cancelling()``), so that a cancelled follower or leader really stops.  The
sync twin, ``checkpoint``, has nothing to check (threads are not cancelled).
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
