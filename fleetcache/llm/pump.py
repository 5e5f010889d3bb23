"""The producer side of a cached stream: a hand-written pair (ARCHITECTURE §7).

A streamed call runs the cache's ``get_or_set`` in the background -- in a daemon thread
(:class:`StreamPump`) or a task (:class:`AsyncStreamPump`) -- while its caller reads the
chunks.  When that caller's ``compute`` leads, each chunk from the upstream is handed over
the moment it arrives (:meth:`put`) and the whole list is stored at the end; otherwise
``get_or_set`` returns the stored list (a hit, or another worker's stream) and the caller
replays it.  The pump's last item is always the outcome: the value, or the exception.

A caller that closes its stream half-way **abandons** it: the flag is checked before the
upstream call and between chunks (:meth:`check`), and raises :class:`StreamAbandoned`.  It
is a ``BaseException``, like a cancellation: the cache then neither stores the partial
stream nor records a failure; it releases the lease and wakes the followers, and one of
them takes the call over (a follower in this process runs it itself).  The asyncio pump
also cancels its task, which stops a read that is waiting on the upstream at once; a thread
cannot be interrupted, so a sync leader notices at the upstream's next chunk.
"""

from __future__ import annotations

import asyncio
import enum
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any


class StreamAbandoned(BaseException):
    """Raised inside a leader's ``compute`` when its caller closed the stream half-way."""


class Kind(enum.Enum):
    """What a pumped item is."""

    CHUNK = "chunk"
    """A live chunk from the upstream (this caller's compute leads)."""
    DONE = "done"
    """``get_or_set`` returned: the stored list of chunks (payload)."""
    ERROR = "error"
    """``get_or_set`` raised: the exception (payload)."""


Item = tuple[Kind, Any]


class _Flag:
    """The abandoned flag, shared by both pumps."""

    abandoned = False

    def check(self) -> None:
        """Raise StreamAbandoned when the caller closed the stream."""
        if self.abandoned:
            raise StreamAbandoned


class StreamPump(_Flag):
    """Runs a stream's ``get_or_set`` in a daemon thread."""

    def __init__(self) -> None:
        self._items: queue.SimpleQueue[Item] = queue.SimpleQueue()

    def start(self, run: Callable[[], Any]) -> None:
        """Run ``run()`` (the ``get_or_set``) in a new daemon thread."""
        threading.Thread(target=self._main, args=(run,), name="fleetcache-stream",
                         daemon=True).start()

    def _main(self, run: Callable[[], Any]) -> None:
        try:
            value = run()
        except BaseException as exc:  # handed to the reader, which re-raises it
            self._items.put((Kind.ERROR, exc))
        else:
            self._items.put((Kind.DONE, value))

    def put(self, chunk: Any) -> None:
        """Hand a live chunk to the reader."""
        self._items.put((Kind.CHUNK, chunk))

    def next_item(self) -> Item:
        """The next item, waiting for it."""
        return self._items.get()

    def abandon(self) -> None:
        """The reader closed the stream."""
        self.abandoned = True


_RUNNING: set[asyncio.Task[None]] = set()
"""Strong references to the pumps' tasks (the event loop keeps only weak ones)."""


class AsyncStreamPump(_Flag):
    """Runs a stream's ``get_or_set`` in a task of the running event loop."""

    def __init__(self) -> None:
        self._items: asyncio.Queue[Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self, run: Callable[[], Awaitable[Any]]) -> None:
        """Run ``await run()`` (the ``get_or_set``) in a new task."""
        task = asyncio.get_running_loop().create_task(self._main(run))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        self._task = task

    async def _main(self, run: Callable[[], Awaitable[Any]]) -> None:
        try:
            value = await run()
        except BaseException as exc:  # our own task: cancelled only by abandon()
            self._items.put_nowait((Kind.ERROR, exc))
        else:
            self._items.put_nowait((Kind.DONE, value))

    async def put(self, chunk: Any) -> None:
        """Hand a live chunk to the reader."""
        self._items.put_nowait((Kind.CHUNK, chunk))

    async def next_item(self) -> Item:
        """The next item, waiting for it."""
        return await self._items.get()

    def abandon(self) -> None:
        """The reader closed the stream: stop the task (from any thread, even in GC)."""
        self.abandoned = True
        task = self._task
        if task is None or task.done():
            return
        loop = task.get_loop()
        if not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
