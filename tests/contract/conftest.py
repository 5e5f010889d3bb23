"""The lock backends every contract test runs against."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from fleetcache.locking import FencedLock, LockBase, RedisLockAdapter, SetNxLock


@dataclass
class Backend:
    """A lock backend under test and what the contract may expect of it."""

    lock: LockBase
    client: redis.Redis
    fenced: bool
    ttl: float  # a short TTL this backend can honour (python-redis-lock: whole seconds)


FACTORIES: dict[str, tuple[Callable[[redis.Redis], LockBase], bool, float]] = {
    "setnx": (SetNxLock, False, 0.3),
    "fenced": (FencedLock, True, 0.3),
    "redis-lock": (RedisLockAdapter, False, 1.0),
}


@pytest.fixture(params=sorted(FACTORIES))
def backend(request: pytest.FixtureRequest, r: redis.Redis) -> Iterator[Backend]:
    """Each lock backend in turn, on the shared Redis node."""
    factory, fenced, ttl = FACTORIES[request.param]
    yield Backend(factory(r), r, fenced, ttl)
