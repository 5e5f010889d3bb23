"""Pluggable distributed locks that hand out leases (see :class:`Lease`).

=====================  ==========================================================
backend                what it is
=====================  ==========================================================
:class:`SetNxLock`     one Redis, ``SET NX PX`` + Lua compare-and-delete; no fence
:class:`FencedLock`    one Redis, one Lua script grants the lock and the next fence
:class:`RedisLockAdapter`  python-redis-lock's ``Lock`` (signal hand-off, whole seconds)
=====================  ==========================================================
"""

from fleetcache.locking.base import Lock, LockBase
from fleetcache.locking.fenced import FencedLock
from fleetcache.locking.lease import Lease
from fleetcache.locking.redislock import RedisLockAdapter
from fleetcache.locking.setnx import SetNxLock
from fleetcache.locking.watchdog import Watchdog

__all__ = [
    "FencedLock",
    "Lease",
    "Lock",
    "LockBase",
    "RedisLockAdapter",
    "SetNxLock",
    "Watchdog",
]
