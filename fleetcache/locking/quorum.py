"""Redlock's decisions, with no I/O: quorum, validity, and the fence to hand out.

Fences that stay monotonic when the quorum changes
--------------------------------------------------
Every node keeps a fence counter per lock name.  A node that grants the lock bumps its
counter by one inside the acquire script and returns the new value; a node that refuses
returns its current value.  The client hands out

    fence = max(bumped counters of the granting nodes, current counter + 1 of the others)

and makes sure that, before the lease is handed out, a majority of nodes hold a counter
>= fence: when every granting node (a majority) already returned exactly ``fence`` that is
true at once (the healthy path: one round trip); otherwise (counters diverged, e.g. after a
node was unreachable) the client writes ``fence`` back to every node and waits for a
majority to acknowledge (a second round).

Why it increases strictly across successive holders: when fence F was handed out, a
majority Q held counters >= F.  The next successful acquire is granted by a majority G; G
and Q intersect in some node j.  Counters never decrease, so j's counter was >= F when it
granted, and it returned its bumped counter >= F + 1: the next fence is > F.  The same
holds when the nodes reachable for the two grants differ (nodes down, slow or paused in
between), because any two majorities intersect.  (It assumes Redlock's usual timing model:
the previous lease ended before the next was granted on their common node.)

Missing counters (a new lock name, an expired counter, a node that lost its data) start
from the node's clock, in microseconds (``redlock_acquire.lua``).  ``boot`` is when the
node's current data began (a marker set by the first request that finds none):

* on a *mature* node (``now - boot >= 3 s``) a new counter starts at the current whole
  second, ``floor(now) * 10**6``: every node whose clock reads the same second starts a
  new name from the same value, so a new name costs one round (at a second boundary, or
  with skewed clocks, the counters differ and the write-back round settles them);
* on a *young* node (``now - boot < 3 s``: it just started, possibly empty) a new counter
  starts at ``now + 2 s``.

Why a lost counter cannot go back: (1) every fence handed out at time t is below
``t + 2 s`` (+ the grants since): mature starts are <= t, young starts <= t + 2 s, grants
add one each and write-backs copy a fence.  (2) A node that lost its data at T starts
counters at ``now + 2 s > T + 2 s`` while young, and at ``floor(now) > now - 1 s >=
boot + 2 s >= T + 2 s`` once mature: ahead of everything handed out before T, by (1).
(3) A counter that merely expired (its TTL is 7 days, refreshed by every grant) restarts
days after the last grant.  Assumed: fewer than 10**6 grants of one name a second, and
server clocks that do not step back by more than these margins.

What it does not survive: a node that restarts *empty* has lost its locks too, and the
lost lock can be granted twice (Redlock's known weakness; fences stay increasing, so a
fenced write still refuses the older holder).  The remedy is a restart delay:
keep a crashed node out for longer than the longest lock TTL.  ``Redlock(restart_delay=s)``
does it for you: a node whose data is new (no boot marker) abstains for ``s`` seconds from
the first request that reaches it after the restart (so a brand-new deployment abstains
for ``s`` at first use, too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fleetcache.locking.lease import drift


def quorum(n: int) -> int:
    """The majority of ``n`` nodes."""
    return n // 2 + 1


def validity(ttl: float, elapsed: float) -> float:
    """How long a lease granted after ``elapsed`` seconds of a ``ttl`` lock stays valid."""
    return ttl - elapsed - drift(ttl)


@dataclass(frozen=True, slots=True)
class NodeReply:
    """One node's answer to an acquire: granted or not, its counter, or its error."""

    granted: bool = False
    counter: int | None = None
    abstained: bool = False
    error: BaseException | None = None


def parse_acquire(reply: Any) -> NodeReply:
    """Turn a node's raw acquire reply (or exception) into a :class:`NodeReply`.

    Only ``[0 or 1, decimal counter, 0 or 1]`` (never granted and abstained at once) is an
    answer; anything else becomes an error, so a malformed reply never counts as a grant.
    """
    if isinstance(reply, BaseException):
        return NodeReply(error=reply)
    try:
        if not isinstance(reply, (list, tuple)) or len(reply) != 3:
            raise ValueError("not a list of 3 items")
        granted, counter, abstained = _flag(reply[0]), _counter(reply[1]), _flag(reply[2])
        if granted and abstained:
            raise ValueError("granted and abstained at once")
        return NodeReply(granted, counter, abstained)
    except ValueError as exc:
        return NodeReply(error=ValueError(f"unexpected acquire reply {reply!r}: {exc}"))


def _flag(value: Any) -> bool:
    """A Lua 0/1 integer reply as a bool (nothing else: no bools, strings or floats)."""
    if type(value) is int and value in (0, 1):
        return value == 1
    raise ValueError(f"flag {value!r} is not the integer 0 or 1")


def _counter(value: Any) -> int:
    """A fence counter: a non-negative integer, or its ASCII decimal digits."""
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    if isinstance(value, bytes) and value.isdigit():
        return int(value)
    raise ValueError(f"counter {value!r} is not a non-negative decimal integer")


def fence_for(replies: Sequence[NodeReply]) -> tuple[int, bool]:
    """The fence to hand out and whether it must be written back first.

    ``replies`` must hold a majority of grants.  No write-back is needed when every granting
    node already reached the fence.
    """
    candidates = [r.counter if r.granted else r.counter + 1
                  for r in replies if r.counter is not None and r.error is None]
    fence = max(candidates)
    needs_write_back = any(r.granted and r.counter != fence for r in replies)
    return fence, needs_write_back


def count_at_least(replies: Sequence[Any], fence: int) -> int:
    """How many write-back replies confirm a counter >= ``fence``."""
    n = 0
    for reply in replies:
        if isinstance(reply, BaseException):
            continue
        try:
            if int(reply) >= fence:
                n += 1
        except (TypeError, ValueError):
            continue
    return n


def count_true(replies: Sequence[Any]) -> int:
    """How many nodes answered a compare-and-act script with 1."""
    return sum(1 for r in replies if not isinstance(r, BaseException) and r == 1)
