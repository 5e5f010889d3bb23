"""What a cached ``create(stream=True)`` returns: a hand-written pair (ARCHITECTURE §7).

:class:`CachedStream` (``for chunk in stream``) and :class:`AsyncCachedStream`
(``async for chunk in stream``) have the interface of the SDKs' ``Stream`` and
``AsyncStream``: iteration, ``close()``, and use as a context manager that closes on exit.
They are not instances of them.  The chunks are the SDK's own chunk or event models:

- live (``from_cache`` is False): this call's ``compute`` led, and each chunk is the
  upstream's own object, handed over as it arrives; the list is stored when it ends;
- replayed (``from_cache`` is True): a hit, or another worker's (or thread's) stream that
  this call waited for; each chunk is rebuilt from the stored list, in order.

``from_cache`` is None until the first chunk (or the end) has been read.  Closing the
stream before its end abandons it (:mod:`fleetcache.llm.pump`): nothing is stored and the
callers waiting on it take the call over.  A stream dropped unread is closed when it is
garbage-collected.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any

from fleetcache.llm.apis import Api
from fleetcache.llm.pump import AsyncStreamPump, Kind, StreamAbandoned, StreamPump

_END = object()


class _Reader:
    """The reading logic both twins share: what an item from the pump means."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self._replay: Iterator[Any] | None = None
        self._ended = False
        self.from_cache: bool | None = None
        """False: live chunks from this call's upstream call; True: replayed from the cache."""

    def _replayed(self) -> Any:
        assert self._replay is not None
        data = next(self._replay, _END)
        if data is _END:
            self._ended = True
            return _END
        return self._api.rebuild_chunk(data)

    def _take(self, kind: Kind, payload: Any) -> Any:
        if kind is Kind.CHUNK:
            self.from_cache = False
            return payload
        if kind is Kind.ERROR:
            self._ended = True
            if isinstance(payload, StreamAbandoned):
                return _END
            raise payload
        if self.from_cache is None:  # DONE before any live chunk: replay the stored list
            self.from_cache = True
            self._replay = iter(payload)
            return self._replayed()
        self._ended = True
        return _END


class CachedStream(_Reader):
    """A cached ``create(stream=True)`` for a synchronous client (module docstring)."""

    def __init__(self, api: Api, pump: StreamPump) -> None:
        super().__init__(api)
        self._pump = pump

    def __iter__(self) -> CachedStream:
        return self

    def __next__(self) -> Any:
        if self._ended:
            raise StopIteration
        if self._replay is not None:
            chunk = self._replayed()
        else:
            chunk = self._take(*self._pump.next_item())
        if chunk is _END:
            raise StopIteration
        return chunk

    def close(self) -> None:
        """Stop reading: abandons the stream if it has not ended (nothing is stored)."""
        if not self._ended:
            self._ended = True
            self._pump.abandon()

    def __enter__(self) -> CachedStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_ended", True):
            self._pump.abandon()


class AsyncCachedStream(_Reader):
    """A cached ``create(stream=True)`` for an asyncio client (module docstring)."""

    def __init__(self, api: Api, pump: AsyncStreamPump) -> None:
        super().__init__(api)
        self._pump = pump

    def __aiter__(self) -> AsyncCachedStream:
        return self

    async def __anext__(self) -> Any:
        if self._ended:
            raise StopAsyncIteration
        if self._replay is not None:
            chunk = self._replayed()
        else:
            chunk = self._take(*await self._pump.next_item())
        if chunk is _END:
            raise StopAsyncIteration
        return chunk

    async def close(self) -> None:
        """Stop reading: abandons the stream if it has not ended (nothing is stored)."""
        if not self._ended:
            self._ended = True
            self._pump.abandon()

    async def __aenter__(self) -> AsyncCachedStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __del__(self) -> None:
        if not getattr(self, "_ended", True):
            self._pump.abandon()
