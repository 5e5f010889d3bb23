"""Argument checks shared by every lock backend: bad input raises before any I/O."""

from __future__ import annotations

import math

from fleetcache.locking.lease import Lease

#: Upper bound of every duration (ten years), for locks and Policy alike: longer ones
#: overflow ``threading.TIMEOUT_MAX`` or Redis's PX range, so they are refused at once.
MAX_SECONDS = 10 * 365 * 86400


def check_name(name: str) -> None:
    """Raise at once for a lock name that is not a non-empty str."""
    if not isinstance(name, str):
        raise TypeError(f"lock name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("lock name must not be empty")


def check_seconds(what: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise at once for a duration that is not a positive (or zero) finite number.

    Durations above :data:`MAX_SECONDS` (ten years) are refused too: they overflow Redis's
    PX range or ``threading.TIMEOUT_MAX``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{what} must be a {kind} finite number of seconds, not {value!r}")
    if value > MAX_SECONDS:
        raise ValueError(f"{what} must be at most {MAX_SECONDS} seconds (ten years), not {value!r}")


def check_lease(lease: Lease) -> None:
    """Raise at once when ``lease`` is not a Lease."""
    if not isinstance(lease, Lease):
        raise TypeError(f"expected a Lease, not {type(lease).__name__}")


def ttl_ms(ttl: float) -> int:
    """A TTL in whole milliseconds, at least 1."""
    return max(1, math.ceil(ttl * 1000))
