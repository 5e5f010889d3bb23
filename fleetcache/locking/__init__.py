"""Pluggable distributed locks that hand out leases (see :class:`Lease`)."""

from fleetcache.locking.base import Lock, LockBase
from fleetcache.locking.lease import Lease
from fleetcache.locking.setnx import SetNxLock
from fleetcache.locking.watchdog import Watchdog

__all__ = ["Lease", "Lock", "LockBase", "SetNxLock", "Watchdog"]
