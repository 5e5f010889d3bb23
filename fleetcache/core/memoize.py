"""``Cache.memoize`` / ``AsyncCache.memoize``: the request of a call, and the kind checks.

The decorators themselves are a few lines of the cache (``core/_async/cache.py`` and its
generated twin); the pure logic lives here.

The request of a call of ``fn`` is::

    {"fn": "<module>.<qualname>", "args": {<parameter>: <value>, ...}}

with the call's arguments bound by ``inspect.signature(fn).bind(*args, **kwargs)`` and
``apply_defaults()``: ``f(1)``, ``f(x=1)`` and ``f()`` (default ``x=1``) are one entry; a
``*args`` parameter is kept as a list and a ``**kwargs`` one as a dict, under their names.
``key=`` (a callable with the function's signature returning JSON data) replaces the
arguments: ``{"fn": ..., "key": key(*args, **kwargs)}``, for methods (``self`` is not JSON
data) or when only some arguments matter.  ``name=`` replaces ``<module>.<qualname>``.

Arguments (or a key) that are not JSON data (:mod:`fleetcache.core.jsondata`) raise
TypeError naming the function before anything is computed or written.

Lambdas and nested functions (``<lambda>`` or ``<locals>`` in the qualified name) are
refused unless ``name=`` is given: every closure made from one ``def`` has the same
qualified name, so they would silently share entries (and return each other's results).
``name=`` states which entries a function uses; give closures that compute different
things different names (or a ``key=`` that includes what differs).

Entries are found by name and arguments alone: editing the function's body does not change
them (give it a new ``name=``, say ``"pkg.mod.f:v2"``, or ``invalidate()`` the namespace).
Functions of a script run as ``__main__`` are named ``__main__.<qualname>``.

The wrapper is a plain function (so the async one stays a coroutine function for
``inspect``); through an instance, a memoized method's ``request`` and ``forget`` therefore
take the instance as well: ``Model.ask.forget(model, prompt)``.

The kind check is a hand-written pair (ARCHITECTURE §7): :func:`check_kind_async` (used by
``AsyncCache.memoize``) wants an ``async def`` function; :func:`check_kind` (its sync twin,
``Cache.memoize``) refuses one.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    cast,
    overload,
)

from fleetcache.core.keys import canonical_json
from fleetcache.core.policy import Policy

if TYPE_CHECKING:
    from fleetcache.core._async.cache import AsyncCache
    from fleetcache.core._sync.cache import Cache

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)

Request = dict[str, Any]

_BAD_ARGUMENTS = "its arguments are not JSON data (key= can choose what identifies a call)"
_BAD_KEY = "its key= returned something that is not JSON data"


class Memoized(Protocol[P, R_co]):
    """What ``Cache.memoize`` returns: the function (same signature), plus helpers."""

    __name__: str
    __qualname__: str

    @property
    def __wrapped__(self) -> Callable[P, R_co]: ...

    @property
    def cache(self) -> Cache:
        """The cache the function's results live in."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """The cached result of ``fn(*args, **kwargs)``, computed once fleet-wide on a miss."""

    def request(self, *args: P.args, **kwargs: P.kwargs) -> Request:
        """The request (cache key) a call with these arguments uses."""

    def forget(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the entry of a call with these arguments; True if there was one."""

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(
        self: Memoized[Concatenate[S, P2], R], obj: S, owner: type[Any] | None = None
    ) -> BoundMemoized[S, P2, R]: ...


class BoundMemoized(Protocol[S_contra, P, R_co]):
    """A memoized method got through an instance: ``request``/``forget`` want it too."""

    @property
    def cache(self) -> Cache: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def request(self, obj: S_contra, /, *args: P.args, **kwargs: P.kwargs) -> Request: ...

    def forget(self, obj: S_contra, /, *args: P.args, **kwargs: P.kwargs) -> bool: ...


class AsyncMemoized(Protocol[P, R_co]):
    """What ``AsyncCache.memoize`` returns: the coroutine function, plus helpers."""

    __name__: str
    __qualname__: str

    @property
    def __wrapped__(self) -> Callable[P, Coroutine[Any, Any, R_co]]: ...

    @property
    def cache(self) -> AsyncCache:
        """The cache the function's results live in."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """The cached result of ``await fn(*args, **kwargs)``, computed once fleet-wide."""

    def request(self, *args: P.args, **kwargs: P.kwargs) -> Request:
        """The request (cache key) a call with these arguments uses."""

    def forget(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, bool]:
        """Delete the entry of a call with these arguments; True if there was one."""

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(
        self: AsyncMemoized[Concatenate[S, P2], R], obj: S, owner: type[Any] | None = None
    ) -> AsyncBoundMemoized[S, P2, R]: ...


class AsyncBoundMemoized(Protocol[S_contra, P, R_co]):
    """A memoized async method got through an instance: ``request``/``forget`` want it too."""

    @property
    def cache(self) -> AsyncCache: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...

    def request(self, obj: S_contra, /, *args: P.args, **kwargs: P.kwargs) -> Request: ...

    def forget(
        self, obj: S_contra, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, bool]: ...


# ---------------------------------------------------------------------- the kind (a pair)


def check_kind(fn: object) -> None:
    """``Cache.memoize``: a plain function; refuse coroutine and generator functions."""
    _check_callable(fn)
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"Cache.memoize: {_label(fn)} is an async function: memoize it with AsyncCache"
        )
    if inspect.isgeneratorfunction(fn):
        raise TypeError(f"memoize: {_label(fn)} is a generator function (not JSON data)")


def check_kind_async(fn: object) -> None:
    """``AsyncCache.memoize``: an ``async def`` function only."""
    _check_callable(fn)
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"AsyncCache.memoize: {_label(fn)} is not an async def function: "
            "memoize it with Cache"
        )


# ---------------------------------------------------------------------- decoration time


def memo_policy(cache_policy: Policy, policy: Policy | None, ttl: float | None) -> Policy | None:
    """The policy of a memoized function: ``policy``, with ``ttl`` replaced when given.

    Validated now, at decoration: a bad ``ttl`` raises ValueError (TypeError if not a
    number) here rather than at the first call.  None: the cache's own policy.
    """
    if policy is not None and not isinstance(policy, Policy):
        raise TypeError(f"policy must be a fleetcache.Policy, not {type(policy).__name__}")
    if ttl is None:
        return policy
    return dataclasses.replace(policy if policy is not None else cache_policy, ttl=ttl)


def function_name(fn: object, name: str | None) -> str:
    """The ``"fn"`` part of the requests: ``name``, else ``<module>.<qualname>``."""
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"memoize: name must be a str, not {type(name).__name__}")
        if not name:
            raise ValueError("memoize: name must not be empty")
        return name
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"memoize: {fn!r} has no __module__ and __qualname__: pass name=")
    if "<" in qualname:  # <lambda>, <locals>
        raise TypeError(
            f"memoize: {module}.{qualname} is a lambda or nested function, whose closures "
            "all share one qualified name (and so would share entries): pass name="
        )
    return f"{module}.{qualname}"


def request_builder(
    fn: Callable[P, Any], *, key: Callable[..., Any] | None = None, name: str | None = None
) -> Callable[P, Request]:
    """The function mapping a call's arguments to its request (see the module docstring).

    Every request it returns has been checked to be JSON data: TypeError, naming the
    function, otherwise.
    """
    label = function_name(fn, name)
    if key is not None:
        if not callable(key):
            raise TypeError(f"memoize: key must be callable, not {type(key).__name__}")

        def by_key(*args: P.args, **kwargs: P.kwargs) -> Request:
            request = {"fn": label, "key": key(*args, **kwargs)}
            return _checked(label, request, _BAD_KEY)

        return by_key
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"memoize: no signature for {label} ({exc}): pass key=") from None
    star = {p.name for p in signature.parameters.values() if p.kind is p.VAR_POSITIONAL}

    def by_args(*args: P.args, **kwargs: P.kwargs) -> Request:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{label}(): {exc}") from None
        bound.apply_defaults()
        arguments = {k: list(v) if k in star else v for k, v in bound.arguments.items()}
        request = {"fn": label, "args": arguments}
        return _checked(label, request, _BAD_ARGUMENTS)

    return by_args


def expose(wrapper: Callable[..., Any], cache: object, request: Callable[..., Request],
           forget: Callable[..., Any]) -> Any:
    """``wrapper`` with its ``cache``, ``request`` and ``forget`` attributes set."""
    target = cast(Any, wrapper)
    target.cache = cache
    target.request = request
    target.forget = forget
    return target


# ---------------------------------------------------------------------- helpers


def _checked(label: str, request: Request, problem: str) -> Request:
    """``request`` if it is JSON data, else TypeError naming the memoized function."""
    try:
        canonical_json(request)
    except TypeError as exc:
        detail = str(exc).removeprefix("request is not JSON-serialisable: ")
        raise TypeError(f"memoized {label}: {problem}: {detail}") from None
    return request


def _check_callable(fn: object) -> None:
    if not callable(fn):
        raise TypeError(
            f"memoize needs a function, not {type(fn).__name__} "
            "(its options are keywords: memoize(ttl=...))"
        )


def _label(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or repr(fn))
