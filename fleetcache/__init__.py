"""fleetcache: cache expensive calls (LLM completions above all) in Redis for fleets.

Exactly one upstream call fleet-wide for concurrent identical misses, fenced writes, hits
in one round trip, pluggable locks.  See the README for the guarantees and their limits.
"""

from fleetcache import cacheable
from fleetcache.core._async.cache import AsyncCache
from fleetcache.core._sync.cache import Cache
from fleetcache.core.miss import MISS, Missing
from fleetcache.core.policy import Policy
from fleetcache.core.stats import Stats
from fleetcache.errors import (
    BackendError,
    CodecError,
    CommandRefused,
    FleetcacheError,
    LeaderFailed,
    LockError,
    LockLost,
    LockNotAcquired,
    QuorumNotReached,
    WaitTimeout,
)

__version__ = "0.1.0"

__all__ = [
    "MISS",
    "AsyncCache",
    "BackendError",
    "Cache",
    "CodecError",
    "CommandRefused",
    "FleetcacheError",
    "LeaderFailed",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "Missing",
    "Policy",
    "QuorumNotReached",
    "Stats",
    "WaitTimeout",
    "__version__",
    "cacheable",
]
