"""The namespace events channel: its wire format, encoders and parser (ARCHITECTURE §6).

Every process of a namespace subscribes to one channel, ``fc:<ns>:events``.  Messages are
``<kind>|<payload>``, ASCII:

``r|<entry key>``   the entry was written, or its leader gave up: wake its followers
``e|<entry key>``   the entry's leader failed: wake its followers (they read the record)
``g|<generation>``  the namespace moved to a new generation (``invalidate``)

A message is a *wake-up*, never data: a follower woken by ``r|`` or ``e|`` reads the entry
(or the failure record) from Redis, and a process that hears ``g|`` with a generation newer
than its own reads the generation key before adopting anything (ARCHITECTURE §9: anyone
allowed to PUBLISH can send anything).  :func:`parse` never raises: bytes that are not a
well-formed message give None, and the caller counts and ignores them.

The Lua scripts never build a message themselves: the cache passes each message (or, for
``g|``, its prefix, to which the script appends the generation it chose) as an argument.
"""

from __future__ import annotations

import re
from typing import NamedTuple

READY = b"r"
FAILED = b"e"
GENERATION = b"g"
_SEP = b"|"
#: What a script appends the new generation to.
GENERATION_PREFIX = GENERATION + _SEP
#: Entry keys are short ASCII (``fc:<ns ≤ 64>:<gen>:{<sha256>}``); anything longer is junk.
MAX_KEY = 256
_KEY = re.compile(rb"[\x21-\x7e]+")  # printable ASCII, no spaces
#: Generations are positive integers below 2**63 (server time in µs, or counters above it).
MAX_GENERATION = 2**63 - 1


class Event(NamedTuple):
    """One parsed message: ``kind`` is READY, FAILED or GENERATION."""

    kind: bytes
    key: str = ""
    generation: int = 0


def ready(key: str) -> bytes:
    """The message that wakes the followers of entry ``key`` (written or abandoned)."""
    return READY + _SEP + key.encode()


def failed(key: str) -> bytes:
    """The message that tells the followers of ``key`` that its leader failed."""
    return FAILED + _SEP + key.encode()


def generation(gen: int) -> bytes:
    """The message announcing generation ``gen`` (the scripts build it from the prefix)."""
    return GENERATION_PREFIX + str(gen).encode()


def parse(data: object) -> Event | None:
    """The event ``data`` carries, or None when it is not a well-formed message."""
    if not isinstance(data, bytes):
        return None
    kind, sep, payload = data.partition(_SEP)
    if not sep or not payload:
        return None
    if kind in (READY, FAILED):
        if len(payload) > MAX_KEY or not _KEY.fullmatch(payload):
            return None
        return Event(kind, payload.decode("ascii"))
    if kind == GENERATION:
        if len(payload) > 19 or not payload.isdigit():
            return None
        gen = int(payload)
        if not 0 < gen <= MAX_GENERATION:
            return None
        return Event(kind, generation=gen)
    return None


SHARD_SUFFIX = ":ev"


def shard_channel(key: str) -> str:
    """The shard channel of entry ``key`` (Redis Cluster): its name carries the key's hash
    tag, so it lives in the entry's slot and only that shard's nodes handle its messages."""
    return key + SHARD_SUFFIX
