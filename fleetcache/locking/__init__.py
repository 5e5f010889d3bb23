"""Pluggable distributed locks that hand out leases (see :class:`Lease`).

==========================  =====================================================
backend (sync / asyncio)    what it is
==========================  =====================================================
SetNxLock / AsyncSetNxLock  one Redis, ``SET NX PX`` + Lua compare-and-delete; no fence
FencedLock / AsyncFencedLock  one Redis, one Lua script grants the lock and the next fence
Redlock / AsyncRedlock      a majority of N independent masters, parallel rounds, fences
RedisLockAdapter (sync)     python-redis-lock's ``Lock`` (signal hand-off, whole seconds)
==========================  =====================================================

The asyncio classes are the source; the sync ones are generated from them
(``scripts/unasync.py``), so both follow one implementation.
"""

from fleetcache.locking._async.base import AsyncLock, AsyncLockBase
from fleetcache.locking._async.fenced import AsyncFencedLock
from fleetcache.locking._async.redlock import AsyncRedlock
from fleetcache.locking._async.setnx import AsyncSetNxLock
from fleetcache.locking._sync.base import Lock, LockBase
from fleetcache.locking._sync.fenced import FencedLock
from fleetcache.locking._sync.redlock import Redlock
from fleetcache.locking._sync.setnx import SetNxLock
from fleetcache.locking.async_watchdog import AsyncWatchdog
from fleetcache.locking.lease import Lease
from fleetcache.locking.redislock import RedisLockAdapter
from fleetcache.locking.watchdog import Watchdog

__all__ = [
    "AsyncFencedLock",
    "AsyncLock",
    "AsyncLockBase",
    "AsyncRedlock",
    "AsyncSetNxLock",
    "AsyncWatchdog",
    "FencedLock",
    "Lease",
    "Lock",
    "LockBase",
    "RedisLockAdapter",
    "Redlock",
    "SetNxLock",
    "Watchdog",
]
