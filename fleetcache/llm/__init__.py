"""Cached OpenAI and Anthropic SDK clients (README "LLM SDKs").

::

    from openai import OpenAI
    from fleetcache.llm import cached, from_cache

    client = cached(OpenAI(), cache)
    resp = client.chat.completions.create(model="gpt-4.1-mini", messages=[...])
    from_cache(resp)   # True on a hit

Importing this package imports neither SDK (extras ``fleetcache[openai]``,
``fleetcache[anthropic]``); :func:`cached` works with whichever its client comes from.
"""

from __future__ import annotations

from typing import Any

from fleetcache.llm.client import CachedClient, cached
from fleetcache.llm.mark import ATTR
from fleetcache.llm.pump import StreamAbandoned
from fleetcache.llm.request import IGNORED
from fleetcache.llm.streams import AsyncCachedStream, CachedStream

__all__ = [
    "IGNORED",
    "AsyncCachedStream",
    "CachedClient",
    "CachedStream",
    "StreamAbandoned",
    "cached",
    "from_cache",
]


def from_cache(response: Any) -> bool | None:
    """Whether a response (or stream) of a ``cached()`` client came without its own call.

    True: a hit, or the answer another caller (thread, task or worker) fetched while this
    one waited; False: this call made the upstream call itself; None: not a response of a
    ``cached()`` client, or a stream none of whose chunks has been read yet.
    """
    if isinstance(response, (CachedStream, AsyncCachedStream)):
        return response.from_cache
    value = getattr(response, ATTR, None)
    return value if isinstance(value, bool) else None
