"""The entry envelope: the value plus the metadata stored with it, and its codec.

Stored form: the 4-byte magic ``FC1\\x00`` followed by the orjson encoding of
``[created, fresh_until, compute_seconds, fence, value]`` (a JSON array:
the :class:`Envelope` named tuple as it is).  One ``orjson.loads`` decodes
it, so a hit costs about what decoding the bare value would.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from fleetcache.errors import CodecError

MAGIC = b"FC1\x00"
_FIELDS = 5
_NUMBERS = (int, float)


class Envelope(NamedTuple):
    """A cached value with its metadata, in its stored order.

    ``created`` and ``fresh_until`` are wall-clock epoch seconds; ``compute_seconds`` is how
    long the upstream call took; ``fence`` is the fencing token of the lease the value was
    written under (None when the lock provides none).
    """

    created: float
    fresh_until: float
    compute_seconds: float
    fence: int | None
    value: Any


def encode(env: Envelope) -> bytes:
    """Serialise an envelope; raise TypeError when its value is not JSON data."""
    try:
        body = orjson.dumps(tuple(env))
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
    if type(parts) is not list or len(parts) != _FIELDS:
        raise CodecError("stored entry has the wrong shape")
    env = Envelope._make(parts)
    if not (
        type(env.created) in _NUMBERS
        and type(env.fresh_until) in _NUMBERS
        and type(env.compute_seconds) in _NUMBERS
    ):
        raise CodecError("stored entry has non-numeric timestamps")
    if env.fence is not None and type(env.fence) is not int:
        raise CodecError("stored entry has a non-integer fence")
    return env
