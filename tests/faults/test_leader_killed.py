"""A leader SIGKILLed mid-compute is replaced by exactly one follower."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis

from fleetcache import Cache, Policy
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.testing.waiting import wait_until

LEADER = Path(__file__).with_name("leader_proc.py")
REQ = {"prompt": "leader dies"}


def test_sigkilled_leader_is_replaced_by_one_follower(r: redis.Redis, redis_node: Any) -> None:
    """Leader SIGKILLed: one follower takes over after the lease expires, 2 upstream calls in
    total, every follower gets the new value and none waits past wait_timeout."""
    counter = "test:upstream"
    lock_ttl, wait_timeout = 1.0, 8.0
    proc = subprocess.Popen(
        [sys.executable, str(LEADER), "--url", redis_node.url, "--namespace", "killed",
         "--counter", counter, "--lock-ttl", str(lock_ttl), "--request", "leader dies"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        wait_until(lambda: r.get(counter) == b"1", 20, "the leader's compute to start")
        policy = Policy(lock_ttl=lock_ttl, wait_timeout=wait_timeout)
        clients = [redis_node.client() for _ in range(4)]
        caches = [Cache(c, namespace="killed", policy=policy) for c in clients]
        results: list[Any] = []
        durations: list[float] = []
        guard = threading.Lock()

        def follow(cache: Cache) -> None:
            start = time.monotonic()

            def compute() -> str:
                r.incr(counter)
                return "from the new leader"

            value = cache.get_or_set(REQ, compute)
            with guard:
                results.append(value)
                durations.append(time.monotonic() - start)

        threads = [threading.Thread(target=follow, args=(c,)) for c in caches]
        for t in threads:
            t.start()
        wait_until(lambda: sum(c._notifier.waiting() for c in caches) == 4, 10,
                   "all four to follow the live leader")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        for t in threads:
            t.join(wait_timeout + 5)
        assert not any(t.is_alive() for t in threads), "a follower hung"
        assert results == ["from the new leader"] * 4
        assert r.get(counter) == b"2"
        assert sum(c.stats.takeovers for c in caches) == 1
        assert max(durations) < wait_timeout
        gen = caches[0].generation or 0
        assert not r.exists(KeyLayout("killed").entry(request_hash(REQ), gen).lock)
        for c in caches:
            c.close()
        for cl in clients:
            cl.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
