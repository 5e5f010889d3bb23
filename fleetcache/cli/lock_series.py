"""The uncontended series of ``bench lock``: one acquire + release of a free lock per op.

Each series is a zero-argument callable that acquires and releases one lock name (nobody
else wants it) and raises :class:`SeriesError` if either step did not succeed, so that a
broken backend cannot look fast.  The baseline is what a careful hand-written lock costs:
``SET name token NX PX ttl`` with a fresh random token, then a registered Lua
compare-and-delete run with EVALSHA, on a plain ``redis.Redis``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from fleetcache.locking import FencedLock, Lock, RedisLockAdapter, Redlock, SetNxLock

#: Lease TTL of every uncontended acquire (seconds).
TTL = 10.0
#: ``wait`` of the blocking acquires (never used up: the lock is free).
WAIT = 5.0
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

Op = Callable[[], None]


class SeriesError(RuntimeError):
    """An uncontended acquire or release did not succeed."""


@dataclass(frozen=True)
class Series:
    """One timed series: its label, the op, and the target ratio vs raw (None: reference)."""

    name: str
    op: Op
    target: float | None = None
    nodes: int = 1
    #: Fraction of ``--ops`` timed per round (the slow references take less).
    ops_scale: float = 1.0


def raw_op(r: redis.Redis, name: str) -> Op:
    """The baseline: ``SET NX PX`` + EVALSHA of a registered compare-and-delete."""
    delete = r.register_script(_COMPARE_AND_DELETE)
    px = int(TTL * 1000)

    def op() -> None:
        token = secrets.token_hex(16)
        if not r.set(name, token, nx=True, px=px):
            raise SeriesError(f"raw SET NX failed on {name}")
        if delete(keys=[name], args=[token]) != 1:
            raise SeriesError(f"raw compare-and-delete failed on {name}")

    return op


def lease_op(lock: Lock, name: str, method: str = "acquire") -> Op:
    """A fleetcache backend: ``acquire(name, ttl, wait)`` (or ``try_acquire``) + ``release``."""

    def op_acquire() -> None:
        if not lock.release(lock.acquire(name, TTL, WAIT)):
            raise SeriesError(f"{type(lock).__name__}.release returned False on {name}")

    def op_try() -> None:
        lease = lock.try_acquire(name, TTL)
        if lease is None:
            raise SeriesError(f"{type(lock).__name__}.try_acquire got None on a free lock")
        if not lock.release(lease):
            raise SeriesError(f"{type(lock).__name__}.release returned False on {name}")

    return op_acquire if method == "acquire" else op_try


def redis_py_op(r: redis.Redis, name: str) -> Op:
    """redis-py's own ``redis.lock.Lock``: ``r.lock(name).acquire()`` + ``release()``."""
    lock = r.lock(name, timeout=TTL)

    def op() -> None:
        if not lock.acquire():
            raise SeriesError(f"redis-py Lock.acquire failed on {name}")
        lock.release()  # raises LockNotOwnedError when not held

    return op


def pottery_op(clients: Sequence[redis.Redis], name: str) -> Op | None:
    """pottery's ``Redlock`` on ``clients`` (one thread pool per call), or None if absent."""
    try:
        from pottery import Redlock as PotteryRedlock  # noqa: PLC0415
    except ImportError:
        return None
    lock: Any = PotteryRedlock(key=name, masters=set(clients), auto_release_time=TTL)

    def op() -> None:
        if not lock.acquire(blocking=False):
            raise SeriesError(f"pottery Redlock.acquire failed on {name}")
        lock.release()  # raises ReleaseUnlockedLock when a quorum did not hold it

    return op


#: Target ratios vs raw (the goals in the README's "Measured here").
TARGETS: dict[str, float] = {"setnx": 1.1, "fenced": 1.2, "redlock3": 1.5, "redlock5": 1.7}


def build_series(
    r: redis.Redis,
    redlock_nodes: dict[int, list[redis.Redis]],
    prefix: str,
    *,
    try_acquire: bool = False,
) -> list[Series]:
    """Every series to time; the raw baseline first.  ``redlock_nodes``: N -> N clients."""

    def key(label: str) -> str:
        return f"{prefix}lock:{label}"

    series = [
        Series("raw SET NX + EVALSHA del", raw_op(r, key("raw"))),
        Series("setnx acquire", lease_op(SetNxLock(r), key("setnx")), TARGETS["setnx"]),
        Series("fenced acquire", lease_op(FencedLock(r), key("fenced")), TARGETS["fenced"]),
    ]
    if try_acquire:
        series += [
            Series("setnx try_acquire", lease_op(SetNxLock(r), key("setnx-t"), "try")),
            Series("fenced try_acquire", lease_op(FencedLock(r), key("fenced-t"), "try")),
        ]
    series += [
        Series("python-redis-lock adapter", lease_op(RedisLockAdapter(r), key("adapter"))),
        Series("redis-py Lock", redis_py_op(r, key("redis-py"))),
    ]
    for n, clients in sorted(redlock_nodes.items()):
        target = TARGETS.get(f"redlock{n}")
        lock = Redlock(clients)
        series.append(Series(f"Redlock x{n} acquire", lease_op(lock, key(f"rl{n}")), target, n))
        if try_acquire:
            op = lease_op(lock, key(f"rl{n}-t"), "try")
            series.append(Series(f"Redlock x{n} try_acquire", op, None, n))
    if redlock_nodes:
        n = 3 if 3 in redlock_nodes else min(redlock_nodes)
        op_or_none = pottery_op(redlock_nodes[n], key(f"pottery{n}"))
        if op_or_none is not None:
            series.append(Series(f"pottery Redlock x{n}", op_or_none, None, n, 0.2))
    return series


def timed(op: Op, ops: int) -> float:
    """Seconds per op over ``ops`` calls of ``op``."""
    start = time.perf_counter()
    for _ in range(ops):
        op()
    return (time.perf_counter() - start) / ops


def round_order(names: Sequence[str], i: int) -> list[str]:
    """The order of round ``i``: rotated by ``i``, and reversed on odd rounds."""
    k = i % len(names)
    order = [*names[k:], *names[:k]]
    return order[::-1] if i % 2 else order
