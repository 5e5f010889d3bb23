"""The fleetcache exception tree.

::

    FleetcacheError
    ├── BackendError          Redis unreachable or failing (chained with ``from``)
    │   └── CommandRefused    a reachable Redis refused one command (OOM, NOPERM, READONLY)
    ├── CodecError            a stored entry that cannot be decoded (on read: a miss, logged)
    ├── WaitTimeout           waited past the policy's bound for another worker's result
    ├── LeaderFailed          another process's leader raised while we waited on it
    └── LockError
        ├── LockNotAcquired   (.name, .waited)
        │   └── QuorumNotReached (.granted, .needed, .errors)
        └── LockLost          extend or write found the lease gone or superseded

Exceptions raised by the user's ``compute`` pass through unchanged to the caller that ran
it and to every thread of the same process coalesced on it.  Followers in *other*
processes cannot receive the exception object itself (it lives in another interpreter);
they get :class:`LeaderFailed`, which names the leader's exception type (and its message
only where ``Policy.share_error_message`` allows it).
Bad arguments raise :class:`ValueError` or :class:`TypeError` at once, before anything is
written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class FleetcacheError(Exception):
    """Root of every error fleetcache raises itself."""


class BackendError(FleetcacheError):
    """Redis is unreachable or failing; the redis-py error is chained as ``__cause__``."""


class CommandRefused(BackendError):
    """A reachable Redis refused one command: OOM, NOPERM, READONLY, WRONGTYPE, ...

    Not an outage: it never opens the fail-open breaker.  ``reply`` is the error's first
    word as Redis sent it (``"OOM"``, ``"NOPERM"``, ``"READONLY"``, ``"ERR"``, ...).
    """

    def __init__(self, message: str, reply: str) -> None:
        super().__init__(message)
        self.reply = reply


class CodecError(FleetcacheError):
    """A stored entry cannot be decoded (corrupt, foreign or from an incompatible version)."""


class WaitTimeout(FleetcacheError):
    """A follower waited longer than ``Policy.wait_timeout`` for another worker's result."""

    def __init__(self, key: str, waited: float) -> None:
        super().__init__(f"waited {waited:.3f}s for another worker to compute {key!r}")
        self.key = key
        self.waited = waited


class LeaderFailed(FleetcacheError):
    """The leader (in another process) raised while this caller waited for its result.

    ``exc_type`` is the qualified name of the leader's exception (``"openai.RateLimitError"``);
    ``message`` its redacted text when the leader's policy shares it
    (``Policy.share_error_message``), else ``""``.
    """

    def __init__(self, key: str, exc_type: str, message: str = "") -> None:
        text = f"the leader computing {key!r} raised {exc_type}"
        super().__init__(f"{text}: {message}" if message else text)
        self.key = key
        self.exc_type = exc_type
        self.message = message


class LockError(FleetcacheError):
    """Base of the lock errors."""


class LockNotAcquired(LockError):
    """The lock could not be acquired within ``wait`` seconds."""

    def __init__(self, name: str, waited: float, detail: str = "") -> None:
        msg = f"lock {name!r} not acquired after {waited:.3f}s"
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.name = name
        self.waited = waited


class QuorumNotReached(LockNotAcquired):
    """Redlock: fewer than a majority of the nodes granted the lock.

    ``granted`` holds the indexes of the nodes that granted it, ``needed`` the quorum and
    ``errors`` maps a node index to the error that node raised.
    """

    def __init__(
        self,
        name: str,
        waited: float,
        granted: Sequence[int],
        needed: int,
        errors: Mapping[int, BaseException],
    ) -> None:
        detail = f"granted by nodes {list(granted)}, needed {needed}"
        if errors:
            detail += "; errors: " + ", ".join(
                f"node {i}: {type(e).__name__}: {e}" for i, e in sorted(errors.items())
            )
        super().__init__(name, waited, detail)
        self.granted = tuple(granted)
        self.needed = needed
        self.errors = dict(errors)


class LockLost(LockError):
    """An extend or a fenced write found the lease expired, taken or superseded."""

    def __init__(self, name: str, detail: str = "") -> None:
        msg = f"lease on {name!r} lost"
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.name = name


__all__ = [
    "BackendError",
    "CodecError",
    "CommandRefused",
    "FleetcacheError",
    "LeaderFailed",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "QuorumNotReached",
    "WaitTimeout",
]
