"""The mark on a response of a ``cached()`` client: whether it came from the cache."""

from __future__ import annotations

from typing import Any

ATTR = "_fleetcache_from_cache"


def mark(response: Any, *, from_cache: bool) -> Any:
    """Mark ``response`` (an SDK model) and return it.

    The mark is a private instance attribute set past pydantic's ``__setattr__``: it is not
    a field, so ``model_dump()``/``to_dict()``/``to_json()`` never show it.
    """
    object.__setattr__(response, ATTR, from_cache)
    return response
