"""AsyncEndpoint: one cached ``create`` of an SDK client (README "LLM SDKs").

This asyncio module is the one source; ``fleetcache/llm/_sync/endpoint.py`` (the
:class:`Endpoint` of synchronous clients) is generated from it by ``scripts/unasync.py``.

A call: the request is built from the keyword arguments (:mod:`fleetcache.llm.request`)
before anything is sent, then the cache's ``get_or_set`` runs with a ``compute`` that makes
the real SDK call and returns the response's wire form.  The caller whose ``compute`` ran
gets the SDK's own response object; every other caller (a hit, or a caller that waited for
another worker) gets it rebuilt with the SDK's models.  A streamed call is read through a
pump (:mod:`fleetcache.llm.pump`): chunks pass through as they arrive, and the list is
stored when the stream ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetcache.core._async.cache import AsyncCache
from fleetcache.core.policy import Policy
from fleetcache.llm.apis import Api
from fleetcache.llm.mark import mark
from fleetcache.llm.pump import AsyncStreamPump
from fleetcache.llm.request import build
from fleetcache.llm.streams import AsyncCachedStream


class AsyncEndpoint:
    """``create`` of one SDK resource (e.g. ``chat.completions``), through the cache."""

    def __init__(  # noqa: PLR0917 - the endpoint's whole context
        self,
        api: Api,
        create: Callable[..., Any],
        cache: AsyncCache,
        base_url: str,
        policy: Policy,
        ignored: frozenset[str],
    ) -> None:
        self._api = api
        self._create = create
        self._cache = cache
        self._base_url = base_url
        self._policy = policy
        self._ignored = ignored

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        """The SDK's ``create``: its response type (or a stream of its chunk types)."""
        if args:
            raise TypeError(f"{self._api.name}.create() takes keyword arguments only")
        request, call_kwargs = build(self._api.name, self._base_url, kwargs, self._ignored)
        if request.get("stream"):
            return self._stream(request, call_kwargs)
        api, create = self._api, self._create
        own: list[Any] = []

        async def compute() -> Any:
            response = await create(**call_kwargs)
            own.append(response)
            return api.dump(response)

        value = await self._cache.get_or_set(request, compute, policy=self._policy)
        if own:
            return mark(own[0], from_cache=False)
        return mark(api.rebuild(value), from_cache=True)

    def _stream(self, request: dict[str, Any], call_kwargs: dict[str, Any]) -> AsyncCachedStream:
        api, create, cache, policy = self._api, self._create, self._cache, self._policy
        pump = AsyncStreamPump()

        async def compute() -> list[Any]:
            pump.check()
            upstream = await create(**call_kwargs)
            chunks: list[Any] = []
            try:
                async for chunk in upstream:
                    pump.check()
                    chunks.append(api.dump(chunk))
                    await pump.put(chunk)
            finally:
                await upstream.close()
            return chunks

        async def run() -> Any:
            return await cache.get_or_set(request, compute, policy=policy)

        pump.start(run)
        return AsyncCachedStream(api, pump)
