"""purge_async: delete the keys of a namespace's superseded generations now.

This asyncio module is the source; ``fleetcache/core/_sync/purge.py`` (``purge``) is
generated from it by ``scripts/unasync.py``.  ``invalidate()`` moves a namespace to a new
generation in O(1) and leaves the old generations' keys to their TTLs (ARCHITECTURE §3.1);
this walks the namespace with ``SCAN`` and ``UNLINK``s the keys that
:mod:`fleetcache.core.purge_keys` finds superseded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis

from fleetcache.backend import map_redis_errors
from fleetcache.clusters import primaries_async, scan_reply
from fleetcache.core.keys import KeyLayout, validate_namespace
from fleetcache.core.purge_keys import is_superseded


def check_purge_args(current: int, batch: int) -> None:
    """Raise TypeError / ValueError unless ``current`` and ``batch`` are positive ints."""
    for name, value in (("current", current), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be positive, not {value}")


async def purge_async(
    client: aioredis.Redis | aioredis.RedisCluster,
    layout: KeyLayout,
    current: int,
    *,
    batch: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Delete every per-entry key of ``layout``'s namespace in a generation below
    ``current``; return how many keys were deleted.

    One ``SCAN`` page at a time (``MATCH fc:<ns>:* COUNT batch``, never ``KEYS``); the page's
    superseded keys go in ``UNLINK`` calls of at most ``batch`` keys, then
    ``progress(scanned, deleted)`` is called (keys the SCAN returned so far, keys deleted so
    far).  The generation key, the channel, keys of ``current`` or any newer generation,
    and anything that does not parse as a per-entry key are left alone, so writes into the
    current generation may go on meanwhile.  SCAN may return a key twice: the count is
    UNLINK's, of keys that existed.  A process that has not adopted ``current`` yet (its
    subscription was down) may still be working in an older generation: its keys, a live
    lease included, are deleted too, so such a laggard may compute an entry twice, and
    what it writes after the SCAN passed is left to its TTL.

    Arguments are checked before any I/O: ``current`` and ``batch`` must be positive ints
    (TypeError / ValueError).  Redis errors leave as
    :class:`~fleetcache.errors.BackendError` (:class:`~fleetcache.errors.CommandRefused` for
    an error reply).

    With a Redis Cluster client, every master is walked in turn (SCAN walks one node's
    keyspace); UNLINK is split by slot by the client.
    """
    check_purge_args(current, batch)
    namespace = validate_namespace(layout.namespace)
    scanned = deleted = 0
    for node in await primaries_async(client):
        target: dict[str, Any] = {} if node is None else {"target_nodes": node}
        cursor = 0
        while True:
            with map_redis_errors("purge: SCAN"):
                cursor, keys = scan_reply(await client.scan(
                    cursor=cursor, match=layout.pattern, count=batch, **target))
            scanned += len(keys)
            old = [key for key in keys if is_superseded(key, namespace, current)]
            for start in range(0, len(old), batch):
                with map_redis_errors("purge: UNLINK"):
                    deleted += int(await client.unlink(*old[start : start + batch]))
            if progress is not None:
                progress(scanned, deleted)
            if cursor == 0:
                break
    return deleted
