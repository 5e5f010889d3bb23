"""``doctor --redlock``: the independent masters of a Redlock.

Each node gets the server checks that matter to a lock node (connect, version, scripts);
then a **quorum** round (acquire and release one lock on all nodes at once: which nodes
granted, and whether a majority did) and a **clock** check (each node's ``TIME`` against
this host's clock and against the others': Redlock's validity assumes bounded drift; WARN
over 50 ms, FAIL over 1 s).

A node that fails is a FAIL line naming it.  While the nodes without a FAIL line still make
a quorum (and the quorum round succeeded), those FAIL lines are *tolerated*: locks keep
working, with less margin, so they make the verdict WARN, not FAIL (see :func:`tolerate`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from fleetcache.cli.doctor_checks import check_scripts, check_version
from fleetcache.cli.doctor_nodes import (
    FAIL,
    OK,
    WARN,
    Line,
    Node,
    describe,
    open_client,
    shard_tag,
)
from fleetcache.errors import FleetcacheError
from fleetcache.locking.quorum import quorum

REDLOCK_CHECKS = (check_version, check_scripts)
DRIFT_WARN_S = 0.05
DRIFT_FAIL_S = 1.0


def redlock_nodes(urls: Sequence[str]) -> list[Node]:
    """One :class:`Node` per ``--redlock`` URL."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    nodes = []
    for i, url in enumerate(urls, 1):
        parts = urlsplit(url)
        node = Node(parts.hostname or "127.0.0.1", parts.port or 6379, url, "redlock")
        node.label = f"{node.address} (redlock {i}/{len(urls)})"
        node.tag = shard_tag(())
        nodes.append(node)
    return nodes


def check_quorum(nodes: Sequence[Node], namespace: str, timeout: float) -> Line:
    """One acquire round on every node, then a release: who granted, and the quorum."""
    from fleetcache.locking import Redlock  # noqa: PLC0415

    clients = [open_client(n.url, timeout) for n in nodes]
    need = quorum(len(nodes))
    try:
        lock = Redlock(clients, prefix=f"fc:{namespace}:", counter_ttl=60.0)
        attempt = lock._attempt("quorum", 5.0)  # who granted, not just whether
        released = lock.release(attempt.lease) if attempt.lease is not None else False
    except (redis.RedisError, OSError, FleetcacheError) as exc:
        return Line(FAIL, "quorum", "redlock", f"the lock round failed: {describe(exc, timeout)}")
    finally:
        for client in clients:
            client.close()
    granted = [nodes[i].address for i in attempt.granted]
    missing = [
        f"{n.address} ({describe(attempt.errors[i], timeout) if i in attempt.errors else 'held'})"
        for i, n in enumerate(nodes) if i not in attempt.granted
    ]
    detail = f"{len(granted)}/{len(nodes)} nodes granted (quorum {need})"
    data = {"granted": granted, "quorum": need, "nodes": len(nodes)}
    if attempt.lease is None:
        return Line(FAIL, "quorum", "redlock",
                    detail + ": no lock; not granted by " + ", ".join(missing), data=data)
    detail += f": lock acquired (fence {attempt.lease.fence}) and "
    detail += "released" if released else "NOT released by a quorum"
    if missing:
        return Line(WARN, "quorum", "redlock",
                    detail + "; not granted by " + ", ".join(missing), data=data)
    return Line(OK if released else WARN, "quorum", "redlock", detail, data=data)


def _status(drift: float) -> str:
    if abs(drift) > DRIFT_FAIL_S:
        return FAIL
    return WARN if abs(drift) > DRIFT_WARN_S else OK


def check_clocks(nodes: Sequence[Node], timeout: float) -> list[Line]:
    """Each answering node's ``TIME`` vs this host's clock, and the spread between nodes."""
    lines: list[Line] = []
    offsets: list[float] = []
    for node in nodes:
        if node.client is None or node.down is not None:
            continue
        try:
            before = time.time()
            secs, micros = node.client.time()
            after = time.time()
        except (redis.RedisError, OSError) as exc:
            lines.append(Line(FAIL, "clock", node.name, describe(exc, timeout)))
            continue
        offset = secs + micros / 1e6 - (before + after) / 2
        offsets.append(offset)
        lines.append(Line(_status(offset), "clock", node.name,
                          f"{1000 * offset:+.1f} ms vs this host "
                          f"(± {500 * (after - before):.1f} ms round trip)"))
    if len(offsets) > 1:
        spread = max(offsets) - min(offsets)
        lines.append(Line(_status(spread), "clock", "redlock",
                          f"spread {1000 * spread:.1f} ms across {len(offsets)} nodes "
                          f"(WARN over {1000 * DRIFT_WARN_S:.0f} ms, FAIL over "
                          f"{DRIFT_FAIL_S:g} s)"))
    return lines


def tolerate(nodes: Sequence[Node], lines: Sequence[Line]) -> int:
    """Mark the FAIL lines of failing Redlock nodes *tolerated* when the nodes without a
    FAIL line still make a quorum and the quorum round got its lock; return how many
    nodes failed."""
    names = {n.name for n in nodes}
    bad = {line.node for line in lines if line.status == FAIL and line.node in names}
    round_ok = all(line.status != FAIL for line in lines if line.check == "quorum")
    if bad and round_ok and len(nodes) - len(bad) >= quorum(len(nodes)):
        for line in lines:
            if line.status == FAIL and line.node in bad:
                line.tolerated = True
    return len(bad)
