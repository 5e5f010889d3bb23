"""The lock backends every contract test runs against, sync and asyncio alike.

An asyncio backend runs on an event loop in a background thread behind :class:`LoopFacade`,
which offers the sync method names; its watchdog task keeps running on that loop while a
``hold()`` block runs in the test's thread.  The same tests thus prove both twins.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import redis

from fleetcache.locking import (
    AsyncFencedLock,
    AsyncRedlock,
    AsyncSetNxLock,
    FencedLock,
    Lease,
    RedisLockAdapter,
    Redlock,
    SetNxLock,
)
from fleetcache.testing import NodeProvider, RedisNode

T = TypeVar("T")


class LoopFacade:
    """Sync methods over an asyncio lock whose loop runs in a background thread."""

    def __init__(self, make: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.lock = self._run(self._build(make))

    @staticmethod
    async def _build(make: Callable[[], Any]) -> Any:
        return make()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        return self._run(self.lock.try_acquire(name, ttl))  # type: ignore[no-any-return]

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        return self._run(self.lock.acquire(name, ttl, wait))  # type: ignore[no-any-return]

    def extend(self, lease: Lease, ttl: float) -> Lease:
        return self._run(self.lock.extend(lease, ttl))  # type: ignore[no-any-return]

    def release(self, lease: Lease) -> bool:
        return self._run(self.lock.release(lease))  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def hold(self, name: str, ttl: float, wait: float = 10.0) -> Iterator[Lease]:
        cm = self.lock.hold(name, ttl, wait)
        lease = self._run(cm.__aenter__())
        try:
            yield lease
        except BaseException as exc:
            if not self._run(cm.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self._run(cm.__aexit__(None, None, None))


@dataclass
class Backend:
    """A lock backend under test and what the contract may expect of it."""

    lock: Any
    client: redis.Redis
    fenced: bool
    ttl: float  # a short TTL this backend can honour (python-redis-lock: whole seconds)
    all_clients: list[redis.Redis] = field(default_factory=list)

    def delete_matching(self, pattern: str, keep: Callable[[bytes], bool]) -> None:
        """Delete the keys matching ``pattern`` on every node, except those ``keep`` spares."""
        for client in self.all_clients or [self.client]:
            for key in client.scan_iter(pattern):
                if not keep(key):
                    client.delete(key)


SYNC: dict[str, tuple[Callable[[redis.Redis], Any], bool, float]] = {
    "setnx": (SetNxLock, False, 0.3),
    "fenced": (FencedLock, True, 0.3),
    "redis-lock": (RedisLockAdapter, False, 1.0),
}
ASYNC: dict[str, tuple[Callable[[Any], Any], bool, float]] = {
    "async-setnx": (AsyncSetNxLock, False, 0.3),
    "async-fenced": (AsyncFencedLock, True, 0.3),
}


@pytest.fixture(scope="session")
def event_loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a background thread for the whole session."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture(scope="session")
def redlock_nodes(redis_provider: NodeProvider) -> Iterator[list[RedisNode]]:
    """Three more nodes: with the shared node, Redlock's masters for the contract suite."""
    nodes = redis_provider.start(2)
    yield nodes
    for node in nodes:
        node.stop()


REDLOCK = ("redlock", "async-redlock")


@pytest.fixture(params=sorted(SYNC) + sorted(ASYNC) + list(REDLOCK))
def backend(
    request: pytest.FixtureRequest,
    r: redis.Redis,
    redis_node: Any,
    redlock_nodes: list[RedisNode],
    event_loop_thread: asyncio.AbstractEventLoop,
) -> Iterator[Backend]:
    """Each lock backend in turn: single-node ones on the shared node, Redlock on three."""
    nodes = [redis_node, *redlock_nodes]
    if request.param == "redlock":
        for node in redlock_nodes:
            node.client().flushall()
        clients = [n.client(socket_timeout=0.5) for n in nodes]
        yield Backend(Redlock(clients), r, True, 0.3, [n.client() for n in nodes])
        return
    if request.param == "async-redlock":
        for node in redlock_nodes:
            node.client().flushall()
        aholder: dict[str, Any] = {}

        def make_redlock() -> Any:
            aholder["clients"] = [n.async_client(socket_timeout=0.5) for n in nodes]
            return AsyncRedlock(aholder["clients"])

        yield Backend(LoopFacade(make_redlock, event_loop_thread), r, True, 0.3,
                      [n.client() for n in nodes])
        return
    if request.param in SYNC:
        factory, fenced, ttl = SYNC[request.param]
        yield Backend(factory(r), r, fenced, ttl)
        return
    afactory, fenced, ttl = ASYNC[request.param]
    holder: dict[str, Any] = {}

    def make() -> Any:
        holder["client"] = redis_node.async_client()
        return afactory(holder["client"])

    facade = LoopFacade(make, event_loop_thread)
    yield Backend(facade, r, fenced, ttl)
    asyncio.run_coroutine_threadsafe(holder["client"].aclose(), event_loop_thread).result(10)
