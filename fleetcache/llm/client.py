"""``cached(client, cache)``: an SDK client whose generating calls go through the cache.

The returned object stands in for the client: the routes of :data:`~fleetcache.llm.apis.ROUTES`
(``chat.completions.create`` and ``responses.create`` of OpenAI, ``messages.create`` of
Anthropic) are cached; every other attribute is the real client's own, untouched
(``with_options()`` and ``copy()`` return a cached client again).  The real client is
``__wrapped__``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterable
from typing import Any

from fleetcache import cacheable
from fleetcache.core._async.cache import AsyncCache
from fleetcache.core._sync.cache import Cache
from fleetcache.core.policy import Policy
from fleetcache.llm._async.endpoint import AsyncEndpoint
from fleetcache.llm._sync.endpoint import Endpoint
from fleetcache.llm.apis import ROUTES, Api, Complete
from fleetcache.llm.request import IGNORED

_REWRAPPED = ("with_options", "copy")


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What every node of one cached client shares."""

    cache: Cache | AsyncCache
    base: Policy
    cache_if: cacheable.PredicateLike | None
    ignored: frozenset[str]
    is_async: bool
    base_url: str

    def endpoint(self, api: Api, create: Any) -> Endpoint | AsyncEndpoint:
        """The cached ``create`` of ``api``, calling the real ``create``."""
        parts = [p for p in (self.cache_if, self.base.cache_if) if p is not None]
        rule: cacheable.Predicate = Complete(api)
        for part in parts:
            rule = rule & part
        policy = dataclasses.replace(self.base, cache_if=rule)
        if self.is_async:
            assert isinstance(self.cache, AsyncCache)
            return AsyncEndpoint(api, create, self.cache, self.base_url, policy, self.ignored)
        assert isinstance(self.cache, Cache)
        return Endpoint(api, create, self.cache, self.base_url, policy, self.ignored)


class CachedClient:
    """A stand-in for an SDK client, or for one of its resources (``client.chat``)."""

    def __init__(self, real: Any, routes: dict[str, Any], setup: _Setup, root: bool) -> None:
        self.__wrapped__ = real
        self._fc_routes = routes
        self._fc_setup = setup
        self._fc_root = root

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_fc_"):
            raise AttributeError(name)
        target = getattr(self.__wrapped__, name)
        route = self._fc_routes.get(name)
        found: Any
        if isinstance(route, Api):
            found = self._fc_setup.endpoint(route, target).create
        elif route is not None:
            found = CachedClient(target, route, self._fc_setup, root=False)
        elif self._fc_root and name in _REWRAPPED and callable(target):
            return _rewrapping(target, self._fc_setup)
        else:
            return target  # passed through: looked up on the real client every time
        object.__setattr__(self, name, found)  # a route is resolved once
        return found

    def __dir__(self) -> Iterable[str]:
        return sorted(set(dir(self.__wrapped__)) | set(self._fc_routes))

    def __repr__(self) -> str:
        return f"fleetcache.llm.cached({self.__wrapped__!r})"


def cached(
    client: Any,
    cache: Cache | AsyncCache,
    *,
    policy: Policy | None = None,
    cache_if: cacheable.PredicateLike | None = cacheable.no_tool_calls,
    ignore: Iterable[str] = (),
) -> Any:
    """``client`` (an OpenAI or Anthropic SDK client) with its generating calls cached.

    ``cache``: a :class:`~fleetcache.Cache` for a synchronous client, an
    :class:`~fleetcache.AsyncCache` for an asyncio one.  ``policy`` (default: the cache's)
    applies to every cached call; ``cache_if`` (default :data:`cacheable.no_tool_calls`;
    ``None``: no rule of the wrapper's own) is added to that policy's own ``cache_if``, and
    so is the rule that only finished answers are stored.  ``ignore`` names more arguments
    to leave out of the key, besides :data:`fleetcache.llm.request.IGNORED`.  Raises
    TypeError at once for an unknown client or a cache of the wrong kind.
    """
    sdk, is_async = _identify(client)
    if is_async and not isinstance(cache, AsyncCache):
        raise TypeError(f"{type(client).__name__} is an asyncio client: pass an AsyncCache")
    if not is_async and not isinstance(cache, Cache):
        raise TypeError(f"{type(client).__name__} is a synchronous client: pass a Cache")
    if policy is not None and not isinstance(policy, Policy):
        raise TypeError(f"policy must be a fleetcache.Policy, not {type(policy).__name__}")
    if cache_if is not None and not callable(cache_if):
        raise TypeError(f"cache_if must be callable or None, not {cache_if!r}")
    if isinstance(ignore, str):
        raise TypeError("ignore must be a collection of argument names, not a string")
    names = frozenset(ignore)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"ignore must hold argument names (str), not {sorted(map(repr, names))}")
    setup = _Setup(
        cache, policy or cache.policy, cache_if, IGNORED | names, is_async, _base_url(client)
    )
    return CachedClient(client, ROUTES[sdk], setup, root=True)


def _identify(client: Any) -> tuple[str, bool]:
    """``(sdk, is_async)`` of an SDK client; TypeError for anything else."""
    if isinstance(client, CachedClient):
        raise TypeError("this client is cached already")
    sdk = type(client).__module__.split(".", 1)[0]
    if sdk in ROUTES:
        base = importlib.import_module(f"{sdk}._base_client")
        if isinstance(client, base.AsyncAPIClient):
            return sdk, True
        if isinstance(client, base.SyncAPIClient):
            return sdk, False
    raise TypeError(
        "cached() takes an openai.OpenAI/AsyncOpenAI or anthropic.Anthropic/AsyncAnthropic "
        f"client, not {type(client).__module__}.{type(client).__qualname__}"
    )


def _base_url(client: Any) -> str:
    return str(getattr(client, "base_url", ""))


def _rewrapping(method: Any, setup: _Setup) -> Any:
    def rewrapped(*args: Any, **kwargs: Any) -> Any:
        client = method(*args, **kwargs)
        sdk, _ = _identify(client)
        again = dataclasses.replace(setup, base_url=_base_url(client))
        return CachedClient(client, ROUTES[sdk], again, root=True)

    return rewrapped
