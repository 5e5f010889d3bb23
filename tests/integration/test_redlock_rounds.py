"""Redlock's healthy path is one parallel round per acquire and one per release."""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis

from fleetcache.locking import Redlock

BOOT = "fleetcache:redlock:boot"


def script_calls(client: redis.Redis) -> int:
    """EVAL + EVALSHA calls the node has executed so far."""
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


def test_new_name_on_mature_nodes_takes_one_round(make_nodes: Any) -> None:
    """On nodes whose data is older than 3 s, a never-used name is granted in one round
    (every node starts its counter at the same whole second: no fence write-back), and an
    established name too; a release is one more round."""
    nodes = make_nodes(3)
    clients = [n.client(socket_timeout=0.5) for n in nodes]
    old = int((time.time() - 60) * 1_000_000)
    for c in clients:
        c.set(BOOT, old, px=86_400_000)
    lock = Redlock(clients)
    lock.release(lock.acquire("warm-up", 5, 1))  # loads the scripts (EVAL fallback) once
    for fresh in (True, False):
        # a second boundary may split a new name's counters (then two rounds): retry then
        for _ in range(5 if fresh else 1):
            name = f"new:{uuid.uuid4().hex}" if fresh else "warm-up"
            before = [script_calls(c) for c in clients]
            lease = lock.acquire(name, 5, 1)
            after_acquire = [script_calls(c) for c in clients]
            assert lock.release(lease)
            after_release = [script_calls(c) for c in clients]
            acquire_rounds = {a - b for a, b in zip(after_acquire, before, strict=True)}
            if acquire_rounds == {1}:
                break
        assert acquire_rounds == {1}, f"{name}: {acquire_rounds} scripts per node"
        assert {a - b for a, b in zip(after_release, after_acquire, strict=True)} == {1}


def test_young_nodes_settle_new_counters_with_a_write_back(make_nodes: Any) -> None:
    """Just-started nodes (data younger than 3 s) start counters at now + 2 s each, which
    differ: the first grant writes the fence back (two rounds) and then all agree."""
    nodes = make_nodes(3)
    clients = [n.client(socket_timeout=0.5) for n in nodes]
    lock = Redlock(clients)
    name = f"young:{uuid.uuid4().hex}"
    lease = lock.acquire(name, 5, 1)
    counters = {int(c.get(f"{name}:fence") or 0) for c in clients}
    assert counters == {lease.fence}
    assert lease.fence is not None
    assert lease.fence > time.time() * 1_000_000
    lock.release(lease)
