"""Request hashing and the Redis key layout.

A request is any JSON data (the rule, shared with cached values, is in
:mod:`fleetcache.core.jsondata`).  It is hashed whole: canonical JSON (object keys sorted at
every depth, no whitespace, UTF-8, non-ASCII kept as is) then SHA-256.  Two
requests that are equal as JSON values get the same hash whatever their key order; ``1``
and ``1.0`` are different JSON texts and so different requests, ``True`` and ``1`` too.

Every per-entry key shares one hash tag (the request hash in braces), so the value, the
lock and the fence of one entry sit in one Redis Cluster slot::

    fc:{ns}:gen                      namespace generation (see invalidate)
    fc:{ns}:events                   pub/sub channel: ready / failed / invalidated
    fc:{ns}:{gen}:{<sha256>}         the entry envelope
    fc:{ns}:{gen}:{<sha256>}:lock    the single-flight lease
    fc:{ns}:{gen}:{<sha256>}:err     a failed leader's short-lived error record
    fc:{ns}:{gen}:{<sha256>}:fence   the highest fence a leader of this entry claimed
    fc:{ns}:{gen}:{<sha256>}:handoff a value cache_if refused, for the followers (10 s)
    fc:{ns}:{gen}:{<sha256>}:hits    the hot-key read counter (expires with its window)
    fc:{ns}:{gen}:{<sha256>}:slid    a hot entry's slid fresh-until (ms), lives with it
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from fleetcache.core import jsondata

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_PREFIX = "fc"


def canonical_json(obj: Any) -> bytes:
    """Return the canonical JSON bytes of ``obj``: sorted keys, compact, UTF-8.

    Raises :class:`TypeError` for anything that is not JSON data as
    :mod:`fleetcache.core.jsondata` defines it (sets, bytes, arbitrary objects, dataclasses,
    datetimes, non-string dict keys, NaN and infinities are refused rather than silently
    coerced, so that two different requests never share a hash).  orjson's JSON renderings
    of ``uuid.UUID`` and ``enum.Enum`` members are accepted: they hash as the JSON value they
    render to.  Integers beyond 64 bits are accepted.
    """
    return jsondata.dumps(obj, sort_keys=True, what="request")


def request_hash(request: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of ``request``."""
    return hashlib.sha256(canonical_json(request)).hexdigest()


def validate_namespace(namespace: str) -> str:
    """Return ``namespace`` if it is a safe key component, else raise ValueError."""
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, not {type(namespace).__name__}")
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise ValueError(
            f"namespace {namespace!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
        )
    return namespace


@dataclass(frozen=True, slots=True)
class EntryKeys:
    """The Redis keys of one cache entry (one generation of one request)."""

    value: str
    lock: str
    error: str
    fence: str
    handoff: str
    hits: str
    slid: str


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Builds the keys of one namespace."""

    namespace: str

    @property
    def gen(self) -> str:
        """The namespace generation counter key."""
        return f"{_PREFIX}:{self.namespace}:gen"

    @property
    def channel(self) -> str:
        """The namespace's event channel (ready, failed, invalidated)."""
        return f"{_PREFIX}:{self.namespace}:events"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of this namespace."""
        return f"{_PREFIX}:{self.namespace}:*"

    def value_key(self, digest: str, gen: int) -> str:
        """Just the entry key (the hit path needs nothing else)."""
        return f"{_PREFIX}:{self.namespace}:{gen}:{{{digest}}}"

    def entry(self, digest: str, gen: int) -> EntryKeys:
        """Keys of the entry with request hash ``digest`` in generation ``gen``."""
        base = self.value_key(digest, gen)
        return EntryKeys(
            value=base,
            lock=f"{base}:lock",
            error=f"{base}:err",
            fence=f"{base}:fence",
            handoff=f"{base}:handoff",
            hits=f"{base}:hits",
            slid=f"{base}:slid",
        )
