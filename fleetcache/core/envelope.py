"""The entry envelope: the value plus the metadata stored with it, and its codec.

Stored form: a 4-byte magic followed by the JSON encoding of
``[created, fresh_until, compute_seconds, fence, value]`` (a JSON array:
the :class:`Envelope` named tuple as it is).  The magic is ``FC1\\x00`` for almost every
entry: one ``orjson.loads`` decodes it, so a hit costs about what decoding the bare value
would.  An entry whose value holds integers beyond 64 bits, which ``orjson.loads`` would
read back as floats, gets ``FC1\\x01`` and is decoded by the standard library, exactly.

The value must be JSON data under the same rule as requests
(:mod:`fleetcache.core.jsondata`); anything else raises TypeError at encode time.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from fleetcache.core import jsondata
from fleetcache.errors import CodecError

MAGIC = b"FC1\x00"
MAGIC_WIDE_INTS = b"FC1\x01"
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
    # A list, not the named tuple: orjson refuses tuple subclasses, and a list compares
    # equal to what orjson.loads returns, which keeps jsondata's NaN check on its fast path.
    body, wide_ints = jsondata.encode(list(env), sort_keys=False, what="value")
    return (MAGIC_WIDE_INTS if wide_ints else MAGIC) + body


def decode(raw: bytes) -> Envelope:
    """Parse stored bytes; raise :class:`CodecError` when they are not a valid envelope."""
    if raw.startswith(MAGIC):
        wide_ints = False
    elif raw.startswith(MAGIC_WIDE_INTS):
        wide_ints = True
    else:
        raise CodecError("stored entry does not start with the fleetcache magic")
    try:
        parts = jsondata.loads(memoryview(raw)[len(MAGIC) :], wide_ints=wide_ints)
    except ValueError as exc:
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
