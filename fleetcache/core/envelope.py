"""The entry envelope: the value plus the metadata stored with it, and its codec.

Stored form: the 4-byte magic ``FC1\\x00`` followed by the orjson encoding of
``[created, fresh_until, compute_seconds, fence, value]``.  One ``orjson.loads`` decodes
it, so a hit costs about what decoding the bare value would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fleetcache.errors import CodecError

MAGIC = b"FC1\x00"
_FIELDS = 5


@dataclass(frozen=True, slots=True)
class Envelope:
    """A cached value with its metadata.

    ``created`` and ``fresh_until`` are wall-clock epoch seconds; ``compute_seconds`` is how
    long the upstream call took; ``fence`` is the fencing token of the lease the value was
    written under (None when the lock provides none).
    """

    value: Any
    created: float
    fresh_until: float
    compute_seconds: float
    fence: int | None = None


def encode_value(value: Any) -> bytes:
    """Encode a value alone to JSON bytes; raise TypeError when it is not JSON data."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"value is not JSON-serialisable: {exc}") from None


def encode(env: Envelope) -> bytes:
    """Serialise an envelope; raise TypeError when its value is not JSON data."""
    try:
        body = orjson.dumps(
            [env.created, env.fresh_until, env.compute_seconds, env.fence, env.value]
        )
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"value is not JSON-serialisable: {exc}") from None
    return MAGIC + body


def decode(raw: bytes) -> Envelope:
    """Parse stored bytes; raise :class:`CodecError` when they are not a valid envelope."""
    if not raw.startswith(MAGIC):
        raise CodecError("stored entry does not start with the fleetcache magic")
    try:
        parts = orjson.loads(memoryview(raw)[len(MAGIC) :])
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"stored entry is not valid JSON: {exc}") from exc
    if not isinstance(parts, list) or len(parts) != _FIELDS:
        raise CodecError("stored entry has the wrong shape")
    created, fresh_until, compute_seconds, fence, value = parts
    if not all(isinstance(x, (int, float)) for x in (created, fresh_until, compute_seconds)):
        raise CodecError("stored entry has non-numeric timestamps")
    if fence is not None and not isinstance(fence, int):
        raise CodecError("stored entry has a non-integer fence")
    return Envelope(value, float(created), float(fresh_until), float(compute_seconds), fence)
