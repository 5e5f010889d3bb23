"""The typed ``MISS`` sentinel that :meth:`Cache.get` returns when nothing is cached."""

from __future__ import annotations

import enum
from typing import Final, Literal


class Missing(enum.Enum):
    """The type of :data:`MISS` (an enum, so ``x is MISS`` narrows types)."""

    MISS = "MISS"

    def __repr__(self) -> str:
        return "fleetcache.MISS"

    def __str__(self) -> str:
        return "fleetcache.MISS"

    def __bool__(self) -> Literal[False]:
        return False


MISS: Final = Missing.MISS
