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

What it does not survive: a node that restarts *empty* has lost its counters and its
locks.  Counters restart from the server time in microseconds (see ``redlock_acquire.lua``)
so the fences stay ahead of the old ones unless the clocks misbehave, but the lost lock
itself can be granted twice (Redlock's known weakness).  The remedy is a restart delay:
keep a crashed node out for longer than the longest lock TTL.  ``Redlock(restart_delay=s)``
does it for you: a node whose data is new (no boot marker) abstains for ``s`` seconds.
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
    """Turn a node's raw acquire reply (or exception) into a :class:`NodeReply`."""
    if isinstance(reply, BaseException):
        return NodeReply(error=reply)
    try:
        granted, counter, abstained = reply
        return NodeReply(bool(int(granted)), int(counter), bool(int(abstained)))
    except (TypeError, ValueError) as exc:
        return NodeReply(error=ValueError(f"unexpected acquire reply {reply!r}: {exc}"))


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
