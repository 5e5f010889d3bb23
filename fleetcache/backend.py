"""The boundary with redis-py: error mapping and connections with bounded timeouts."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
from importlib import resources
from typing import Any, Literal, TypeAlias

import redis
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript, Script
from redis.connection import AbstractConnection
from redis.exceptions import MaxConnectionsError
from redis.retry import Retry

from fleetcache.errors import BackendError, CommandRefused

#: Everything redis-py or a socket can raise: mapped to BackendError at the boundary.
#: (redis-py's cluster client raises ``RedisClusterException``s -- a slot no reachable
#: master serves, a cluster it cannot map -- which are not ``RedisError``s.)
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,
)

#: The Redis Cluster clients, sync and asyncio.
CLUSTER_CLIENTS: tuple[type[Any], ...] = (redis.RedisCluster, aioredis.RedisCluster)

#: What the cache talks to: one node or a cluster (sync, and its asyncio twin).
Client: TypeAlias = redis.Redis | redis.RedisCluster
AsyncClient: TypeAlias = aioredis.Redis | aioredis.RedisCluster

#: Error replies that mean the server cannot serve anything right now: an outage.
OUTAGE_REPLIES = frozenset({"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"})

#: redis-py strips the code from the replies it maps to its own classes: put it back.
_REPLY_OF_CLASS: tuple[tuple[type[BaseException], str], ...] = (
    (redis.exceptions.OutOfMemoryError, "OOM"),
    (redis.exceptions.NoPermissionError, "NOPERM"),
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.NoScriptError, "NOSCRIPT"),
    (redis.exceptions.ExecAbortError, "EXECABORT"),
    (redis.exceptions.MasterDownError, "MASTERDOWN"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.MovedError, "MOVED"),
    (redis.exceptions.AskError, "ASK"),
)


def reply_code(exc: BaseException) -> str:
    """The error reply's code (``"OOM"``, ``"NOPERM"``, ``"WRONGTYPE"``, ``"ERR"``, ...)."""
    for cls, code in _REPLY_OF_CLASS:
        if isinstance(exc, cls):
            return code
    first = str(exc).split(" ", 1)[0]
    return first if first.isalpha() and first.isupper() else "ERR"


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means Redis cannot serve (ARCHITECTURE §8), False when a reachable
    Redis refused this one command (OOM, NOPERM, READONLY, WRONGTYPE, a script error...)."""
    if isinstance(exc, redis.exceptions.ResponseError):
        return reply_code(exc) in OUTAGE_REPLIES
    return isinstance(
        exc,
        (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.InvalidResponse,
            redis.exceptions.RedisClusterException,
            redis.exceptions.ClusterError,
            OSError,
        ),
    )


class map_redis_errors:
    """Re-raise a redis-py / socket error inside the block as a fleetcache error.

    An outage becomes :class:`BackendError`; an error reply that is no outage becomes
    :class:`CommandRefused` (a BackendError too, so callers that only care about "Redis
    failed" catch both).  A class rather than a generator-based context manager: it sits
    on every hot path.
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
            raise as_backend_error(exc, self.what) from exc
        return False


def as_backend_error(exc: BaseException, what: str) -> BackendError:
    """The fleetcache error for a redis-py / socket error ``exc`` raised while doing ``what``."""
    text = f"{what}: {type(exc).__name__}: {exc}"
    if is_outage(exc):
        return BackendError(text)
    return CommandRefused(text, reply_code(exc))


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
    common case is the plain pool's, and only a caller that finds the pool exhausted waits:
    in a FIFO queue, each release waking exactly one waiter (waking them all made every
    release cost a failed checkout per waiter: half the throughput at 4 tasks per
    connection).
    """

    def __init__(self, *args: Any, timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wait = timeout
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if not self._waiters:  # nobody queued: try at once (the common case)
            try:
                return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(deadline - loop.time()):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken but leaving: pass the wake-up on
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                if isinstance(exc, TimeoutError):
                    raise MaxConnectionsError(
                        f"no connection came free within {self._wait:.3f}s"
                    ) from None
                raise
            try:
                return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            except MaxConnectionsError:  # taken by a caller that did not queue: wait again
                continue

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        self._wake_one()


def _clone(
    client: Any,
    asyncio: bool,
    *,
    handshake: bool,
    retries: int,
    wait: float,
    max_connections: int | None = None,
    **overrides: Any,
) -> Any:
    """A client of the same flavour on a new pool with ``client``'s settings.

    The new pool has the same size (capped at ``max_connections`` when given) but *waits*:
    a caller that finds every connection busy waits up to ``wait`` seconds for one instead
    of failing at once (an exhausted pool is load, not a dead Redis).  None when
    ``client``'s pool is not a plain ConnectionPool (Sentinel, blocking, cluster): such
    clients are used as given.
    """
    classes: tuple[Any, Any, Any, Any] = (
        (aioredis.ConnectionPool, _WaitingAsyncPool, aioredis.Redis, AsyncRetry)
        if asyncio
        else (redis.ConnectionPool, redis.BlockingConnectionPool, redis.Redis, Retry)
    )
    plain_cls, pool_cls, client_cls, retry_cls = classes
    if isinstance(client, CLUSTER_CLIENTS):
        return _clone_cluster(client, asyncio, retries=retries, max_connections=max_connections,
                              **overrides)
    pool: Any = getattr(client, "connection_pool", None)
    if type(pool) is not plain_cls:
        return None
    kwargs = clone_kwargs(
        pool, handshake=handshake, retry=retry_cls(NoBackoff(), retries), **overrides
    )
    size = pool.max_connections
    if max_connections is not None:
        size = min(size, max_connections)
    new_pool = pool_cls(
        connection_class=pool.connection_class, max_connections=size, timeout=wait, **kwargs
    )
    return client_cls(connection_pool=new_pool)


#: Connection settings of a user's cluster client that every connection we open to its
#: nodes keeps (auth, TLS, naming, keep-alive); timeouts, retries and pool sizes are ours.
NODE_KEPT = (
    "username", "password", "credential_provider", "client_name", "socket_keepalive",
    "socket_keepalive_options", "ssl", "ssl_ca_certs", "ssl_ca_data", "ssl_cert_reqs",
    "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "ssl_min_version", "ssl_ciphers",
)


def cluster_settings(client: Any, *extra: str) -> dict[str, Any]:
    """The :data:`NODE_KEPT` settings (and ``extra`` ones) of a sync or asyncio cluster
    client that it was given."""
    if isinstance(client, redis.RedisCluster):  # the sync client: in its nodes manager
        kwargs = client.nodes_manager.connection_kwargs
    else:
        kwargs = client.connection_kwargs
    return {k: kwargs[k] for k in (*NODE_KEPT, *extra) if kwargs.get(k) is not None}


class _MapFirstAsyncCluster(aioredis.RedisCluster):
    """redis-py's asyncio cluster client, mapping the cluster before its first command.

    redis-py 8 resolves a command's routing policy (which may ask a node) *before* it maps
    the cluster; many tasks sending their first commands at once -- a cache's first burst,
    Lua scripts falling back from NOSCRIPT -- then race on half-open connections
    (``'NoneType' object has no attribute 'writelines'``).  Mapping first, under redis-py's
    own lock, removes the race; afterwards it is one attribute check per command.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Map the cluster if it is not mapped yet, then run the command."""
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


def _clone_cluster(
    client: Any, asyncio: bool, *, retries: int, max_connections: int | None, **overrides: Any
) -> Any:
    """A new cluster client that knows ``client``'s nodes, with its auth and TLS settings,
    bounded timeouts (``overrides``), ``retries`` immediate retries of a failed command,
    RESP2 and no response decoding.  MOVED and ASK redirections are followed by redis-py
    (they are not failures); a slot nobody serves, CLUSTERDOWN or TRYAGAIN surface as
    outages (``is_outage``) after the retries, and the breaker takes it from there."""
    # the nodes it knows (none before an asyncio client's first command) and its seeds
    known = {(n.host, n.port) for n in client.get_nodes()}
    known |= {(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()}
    if asyncio:
        nodes: list[Any] = [aioredis.cluster.ClusterNode(h, p) for h, p in sorted(known)]
        cls: Any = _MapFirstAsyncCluster
        retry: Any = AsyncRetry(NoBackoff(), retries)
    else:
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in sorted(known)]
        cls = redis.RedisCluster
        retry = Retry(NoBackoff(), retries)
    if cluster_settings(client, "decode_responses").get("decode_responses"):
        raise ValueError("fleetcache stores bytes: pass a client without decode_responses=True")
    kept = cluster_settings(client, "address_remap")
    if max_connections is not None:
        kept["max_connections"] = max_connections
    return cls(startup_nodes=nodes, retry=retry, protocol=2, decode_responses=False,
               **kept, **overrides)


def _bounded(
    client: Any, timeout: float | None, asyncio: bool, max_connections: int | None
) -> Any:
    clone = None
    if timeout is not None:
        clone = _clone(
            client, asyncio, handshake=True, retries=1, wait=timeout,
            max_connections=max_connections,
            socket_timeout=timeout, socket_connect_timeout=timeout,
        )
    if clone is not None:
        return clone
    pool = getattr(client, "connection_pool", None)
    if getattr(pool, "connection_kwargs", {}).get("decode_responses"):
        raise ValueError("fleetcache stores bytes: pass a client without decode_responses=True")
    return client


def bounded_client(
    client: Client, timeout: float | None, max_connections: int | None = None
) -> Client:
    """Return a client on its own pool with ``client``'s settings and bounded timeouts.

    The copy uses ``timeout`` as connect and read timeout and retries a failed command once
    at once (a pooled connection that went stale when Redis restarted), never redis-py's
    default backoff schedule; it never decodes responses; its pool holds at most
    ``max_connections`` (when given) and waits up to ``timeout`` for a free connection.
    A cluster client is copied with its nodes, auth and TLS settings (``_clone_cluster``).
    With ``timeout=None``, or a client whose pool is not a plain
    :class:`redis.ConnectionPool` (Sentinel, blocking pools), ``client`` itself is
    returned unchanged.
    """
    result: Client = _bounded(client, timeout, False, max_connections)
    return result


def bounded_async_client(
    client: AsyncClient, timeout: float | None, max_connections: int | None = None
) -> AsyncClient:
    """The asyncio twin of :func:`bounded_client`."""
    result: AsyncClient = _bounded(client, timeout, True, max_connections)
    return result


def _socket_timeout(client: Any) -> float | None:
    value = getattr(client, "connection_pool", None)
    value = getattr(value, "connection_kwargs", {}).get("socket_timeout")
    return float(value) if value else None


def _lock_client(client: Any, timeout: float, asyncio: bool) -> Any:
    clone = _clone(
        client, asyncio, handshake=True, retries=1, wait=timeout,
        socket_timeout=timeout, socket_connect_timeout=timeout,
    )
    if clone is not None:
        return clone
    own = _socket_timeout(client)
    if own is None or own > timeout:
        raise ValueError(
            "the lock's Redis client has no socket_timeout (or a longer one than the cache's "
            f"redis_timeout={timeout}) and its pool cannot be copied: give that client "
            f"socket_timeout<={timeout}, or pass Policy(redis_timeout=None) to use it as is"
        )
    return client


def bounded_lock_client(client: Client, timeout: float) -> Client:
    """A copy of a lock backend's client whose calls are bounded by ``timeout``.

    Raises ValueError when the client cannot be copied (Sentinel, blocking, cluster pools)
    and has no socket timeout of at most ``timeout`` of its own.
    """
    result: Client = _lock_client(client, timeout, False)
    return result


def bounded_lock_async_client(client: AsyncClient, timeout: float) -> AsyncClient:
    """The asyncio twin of :func:`bounded_lock_client`."""
    result: AsyncClient = _lock_client(client, timeout, True)
    return result


def _unretried(client: Any, asyncio: bool, timeout: float | None) -> Any:
    kwargs = client.connection_pool.connection_kwargs
    own = kwargs.get("socket_timeout") or 1.0
    overrides: dict[str, Any] = {}
    if timeout is not None:
        connect = kwargs.get("socket_connect_timeout") or own
        if own > timeout or connect > timeout:
            overrides = {"socket_timeout": min(own, timeout),
                         "socket_connect_timeout": min(connect, timeout)}
    wait = overrides.get("socket_timeout", own)
    clone = _clone(client, asyncio, handshake=False, retries=0, wait=wait, **overrides)
    if clone is not None:
        return clone
    if overrides:
        raise ValueError(
            f"a Redlock node client has a socket_timeout above the cache's redis_timeout="
            f"{timeout} and its pool cannot be copied: give it socket_timeout<={timeout}, "
            "or pass Policy(redis_timeout=None) to use it as is"
        )
    return client


def unretried_client(client: redis.Redis, timeout: float | None = None) -> redis.Redis:
    """``client``'s settings on a new pool: no retries, no connect-time SETINFO handshake;
    socket timeouts capped at ``timeout`` when given (ValueError if that is impossible)."""
    result: redis.Redis = _unretried(client, False, timeout)
    return result


def unretried_async_client(client: aioredis.Redis, timeout: float | None = None) -> aioredis.Redis:
    """The asyncio twin of :func:`unretried_client`."""
    result: aioredis.Redis = _unretried(client, True, timeout)
    return result


def lua_source(package: str, name: str) -> str:
    """Read the Lua script ``lua/<name>.lua`` shipped in ``package``."""
    return resources.files(package).joinpath("lua", f"{name}.lua").read_text("utf-8")


def register(client: Client, package: str, name: str) -> Script:
    """Register a shipped Lua script on ``client`` (EVALSHA with a NOSCRIPT fallback)."""
    return client.register_script(lua_source(package, name))


def register_async(client: AsyncClient, package: str, name: str) -> AsyncScript:
    """The asyncio twin of :func:`register`."""
    return client.register_script(lua_source(package, name))

