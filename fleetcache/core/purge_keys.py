"""Which keys of a namespace belong to a superseded generation (pure: no I/O).

The driver is ``core/_async/purge.py``; the key layout is :mod:`fleetcache.core.keys`
(ARCHITECTURE §2).  A per-entry key of namespace ``ns`` is::

    fc:<ns>:<gen>:{<sha256>}            the entry
    fc:<ns>:<gen>:{<sha256>}:<suffix>   its lease, fence, failure record, the lease's
                                        fence counter (``:lock:fence``), ...

where ``<gen>`` is a positive integer below 2**63 written without leading zeros and
``<sha256>`` is 64 lowercase hex digits.  The suffix is one or more lowercase words, each
after a ``:``, so that a per-entry key added later to the layout is purged too.  Anything
else — the generation key ``fc:<ns>:gen``, the channel ``fc:<ns>:events``, another
namespace's keys (``llm2`` is not ``llm``: the namespace ends at the first ``:``), keys that
do not parse — has no generation and is never purged.
"""

from __future__ import annotations

import re

from fleetcache.core.events import MAX_GENERATION
from fleetcache.core.keys import validate_namespace

#: What follows ``fc:<ns>:``.  ``[0-9]``, not ``\d``: only ASCII digits.
_REST = re.compile(r"([1-9][0-9]{0,18}):\{[0-9a-f]{64}\}(?::[a-z]+)*")


def key_generation(key: str | bytes, namespace: str) -> int | None:
    """The generation of ``key`` if it is a per-entry key of ``namespace``, else None.

    ``key`` may be ``str`` or ``bytes`` (as SCAN returns it); bytes that are not ASCII give
    None.  Raises ValueError (TypeError) for an invalid ``namespace``.
    """
    validate_namespace(namespace)
    if isinstance(key, bytes):
        try:
            key = key.decode("ascii")
        except UnicodeDecodeError:
            return None
    prefix = f"fc:{namespace}:"
    if not key.startswith(prefix):
        return None
    match = _REST.fullmatch(key, len(prefix))
    if match is None:
        return None
    gen = int(match.group(1))
    return gen if gen <= MAX_GENERATION else None


def is_superseded(key: str | bytes, namespace: str, current: int) -> bool:
    """True when ``key`` is a per-entry key of ``namespace`` in a generation below
    ``current``: the keys that purge deletes."""
    gen = key_generation(key, namespace)
    return gen is not None and gen < current
