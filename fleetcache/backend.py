"""The boundary with redis-py: error mapping and connections with bounded timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from importlib import resources
from typing import Any, Literal

import redis
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript, Script
from redis.connection import AbstractConnection
from redis.exceptions import MaxConnectionsError
from redis.retry import Retry

from fleetcache.errors import BackendError

#: redis-py errors that mean "the backend is failing", as opposed to a bug of ours.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)


class map_redis_errors:
    """Re-raise any redis-py / socket error inside the block as :class:`BackendError`.

    A class rather than a generator-based context manager: it sits on every hot path.
    """

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        if exc is not None and isinstance(exc, REDIS_ERRORS):
            raise BackendError(f"{self.what}: {type(exc).__name__}: {exc}") from exc
        return False


#: redis-py >= 8 configures CLIENT SETINFO with ``driver_info`` (``lib_name`` is deprecated).
_HAS_DRIVER_INFO = "driver_info" in inspect.signature(AbstractConnection.__init__).parameters

#: Pool-specific entries of redis-py's connection kwargs that a cloned pool must not share.
_POOL_BOUND = ("maint_notifications_pool_handler", "retry_on_timeout", "retry_on_error")


def clone_kwargs(pool: Any, *, handshake: bool = True, **overrides: Any) -> dict[str, Any]:
    """``pool``'s connection settings for a new pool of our own, with ``overrides``.

    ``handshake=False`` drops every connect-time command: ``CLIENT SETINFO``, and the
    ``HELLO 3`` plus maintenance-notifications handshake of redis-py >= 8 (the pool speaks
    RESP2), so that connecting to a hung node costs nothing until a reply is awaited.
    Responses are never decoded (fleetcache stores bytes).
    """
    kwargs: dict[str, Any] = dict(pool.connection_kwargs)
    for key in _POOL_BOUND:
        kwargs.pop(key, None)
    kwargs.update(overrides, decode_responses=False)
    for key in ("socket_timeout", "socket_connect_timeout"):
        if f"orig_{key}" in kwargs and key in overrides:
            kwargs[f"orig_{key}"] = overrides[key]
    if not handshake:
        if _HAS_DRIVER_INFO:
            kwargs.pop("lib_name", None)
            kwargs.pop("lib_version", None)
            kwargs["driver_info"] = None
        else:  # redis-py before driver_info
            kwargs.update(lib_name=None, lib_version=None)
        kwargs["protocol"] = 2
        kwargs.pop("maint_notifications_config", None)  # RESP3 only
    return kwargs


class _WaitingAsyncPool(aioredis.ConnectionPool):
    """A plain asyncio pool that, at its cap, waits for a released connection (up to
    ``timeout`` seconds) instead of failing at once.

    redis-py's ``BlockingConnectionPool`` does this too, but pays for an ``asyncio.Condition``
    and a timeout on *every* checkout (about 15 % of a hit at 64 concurrent tasks); here the
    common case is the plain pool's, and only a caller that finds the pool exhausted waits.
    """

    def __init__(self, *args: Any, timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wait = timeout
        self._released: asyncio.Event | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        deadline: float | None = None
        while True:
            try:
                return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                loop = asyncio.get_running_loop()
                now = loop.time()
                deadline = now + self._wait if deadline is None else deadline
                if now >= deadline:
                    raise
                if self._released is None:
                    self._released = asyncio.Event()
                self._released.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - now):
                        await self._released.wait()

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        if self._released is not None:
            self._released.set()


def _clone(
    client: Any, asyncio: bool, *, handshake: bool, retries: int, wait: float, **overrides: Any
) -> Any:
    """A client of the same flavour on a new pool with ``client``'s settings.

    The new pool has the same size but *waits*: a caller that finds every connection busy
    waits up to ``wait`` seconds for one instead of failing at once (an exhausted pool is
    load, not a dead Redis).  None when ``client``'s pool is not a plain
    ConnectionPool (Sentinel, blocking, cluster): such clients are used as given.
    """
    classes: tuple[Any, Any, Any, Any] = (
        (aioredis.ConnectionPool, _WaitingAsyncPool, aioredis.Redis, AsyncRetry)
        if asyncio
        else (redis.ConnectionPool, redis.BlockingConnectionPool, redis.Redis, Retry)
    )
    plain_cls, pool_cls, client_cls, retry_cls = classes
    pool: Any = getattr(client, "connection_pool", None)
    if type(pool) is not plain_cls:
        return None
    kwargs = clone_kwargs(
        pool, handshake=handshake, retry=retry_cls(NoBackoff(), retries), **overrides
    )
    new_pool = pool_cls(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        timeout=wait,
        **kwargs,
    )
    return client_cls(connection_pool=new_pool)


def _bounded(client: Any, timeout: float | None, asyncio: bool) -> Any:
    clone = None
    if timeout is not None:
        clone = _clone(
            client, asyncio, handshake=True, retries=1, wait=timeout,
            socket_timeout=timeout, socket_connect_timeout=timeout,
        )
    if clone is not None:
        return clone
    pool = getattr(client, "connection_pool", None)
    if getattr(pool, "connection_kwargs", {}).get("decode_responses"):
        raise ValueError("fleetcache stores bytes: pass a client without decode_responses=True")
    return client


def bounded_client(client: redis.Redis, timeout: float | None) -> redis.Redis:
    """Return a client on its own pool with ``client``'s settings and bounded timeouts.

    The copy uses ``timeout`` as connect and read timeout and retries a failed command once
    at once (a pooled connection that went stale when Redis restarted), never redis-py's
    default backoff schedule; it never decodes responses.  With ``timeout=None``, or a
    client whose pool is not a plain :class:`redis.ConnectionPool` (Sentinel, blocking
    pools, clusters), ``client`` itself is returned unchanged.
    """
    result: redis.Redis = _bounded(client, timeout, asyncio=False)
    return result


def bounded_async_client(client: aioredis.Redis, timeout: float | None) -> aioredis.Redis:
    """The asyncio twin of :func:`bounded_client`, for :class:`redis.asyncio.Redis`."""
    result: aioredis.Redis = _bounded(client, timeout, asyncio=True)
    return result


def unretried_client(client: redis.Redis) -> redis.Redis:
    """``client``'s settings on a new pool: no retries, no connect-time SETINFO handshake."""
    wait = client.connection_pool.connection_kwargs.get("socket_timeout") or 1.0
    clone: redis.Redis | None = _clone(client, False, handshake=False, retries=0, wait=wait)
    return client if clone is None else clone


def unretried_async_client(client: aioredis.Redis) -> aioredis.Redis:
    """The asyncio twin of :func:`unretried_client`."""
    wait = client.connection_pool.connection_kwargs.get("socket_timeout") or 1.0
    clone: aioredis.Redis | None = _clone(client, True, handshake=False, retries=0, wait=wait)
    return client if clone is None else clone


def lua_source(package: str, name: str) -> str:
    """Read the Lua script ``lua/<name>.lua`` shipped in ``package``."""
    return resources.files(package).joinpath("lua", f"{name}.lua").read_text("utf-8")


def register(client: redis.Redis, package: str, name: str) -> Script:
    """Register a shipped Lua script on ``client`` (EVALSHA with a NOSCRIPT fallback)."""
    return client.register_script(lua_source(package, name))


def register_async(client: aioredis.Redis, package: str, name: str) -> AsyncScript:
    """The asyncio twin of :func:`register`."""
    return client.register_script(lua_source(package, name))
