"""The cache on Redlock over 5 masters: a cross-process stampede makes one upstream call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis

from fleetcache.testing import RedisNode
from fleetcache.testing.waiting import wait_until

WORKER = Path(__file__).with_name("redlock_cache_worker.py")
PROCESSES = 8
THREADS = 4
ROUNDS = 6
UPSTREAM = 0.2


def start_workers(data_url: str, lock_urls: list[str], ns: str) -> list[subprocess.Popen[str]]:
    """Spawn the stampede worker processes (they wait for each round's "go")."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return [
        subprocess.Popen(
            [sys.executable, str(WORKER), "--data", data_url, "--locks", ",".join(lock_urls),
             "--namespace", ns, "--id", str(i), "--threads", str(THREADS),
             "--rounds", str(ROUNDS), "--upstream", str(UPSTREAM)],
            stdout=subprocess.PIPE, text=True, env=env)
        for i in range(PROCESSES)
    ]


def go(r: redis.Redis, ns: str, rnd: int) -> None:
    """Start round ``rnd`` in every worker (round ROUNDS + 1: stop)."""
    pipe = r.pipeline(transaction=False)
    for i in range(PROCESSES):
        pipe.rpush(f"{ns}:go:{rnd}:{i}", "go")
    pipe.execute()


def round_over(r: redis.Redis, key: str, procs: list[subprocess.Popen[str]]) -> bool:
    """Every caller reported on ``key``, or a worker died (the test then fails)."""
    return r.llen(key) >= PROCESSES * THREADS or any(p.poll() is not None for p in procs)


@pytest.mark.slow
def test_stampede_through_the_cache_on_redlock_makes_one_upstream_call_per_round(
    r: redis.Redis, redis_node: RedisNode, make_nodes: Any,
) -> None:
    """8 processes x 4 threads miss one key together through Cache(lock=Redlock over 5
    masters), 6 rounds: exactly 1 upstream call per round (INCR in Redis), every caller
    gets the same value, no caller fails."""
    lock_nodes: list[RedisNode] = make_nodes(5)
    ns = f"rlstampede{uuid.uuid4().hex[:8]}"
    procs = start_workers(redis_node.url, [n.url for n in lock_nodes], ns)
    calls: list[int] = []
    rounds: list[list[dict[str, Any]]] = []
    durations: list[float] = []
    stats: list[dict[str, int]] = []
    try:
        wait_until(lambda: r.llen(f"{ns}:ready") == PROCESSES
                   or any(p.poll() is not None for p in procs), 120, "the workers to start")
        assert all(p.poll() is None for p in procs), "a worker died while starting"
        for rnd in range(1, ROUNDS + 1):
            start = time.monotonic()
            go(r, ns, rnd)
            key = f"{ns}:results:{rnd}"
            wait_until(partial(round_over, r, key, procs), 60, f"round {rnd}")
            durations.append(time.monotonic() - start)
            rounds.append([json.loads(x) for x in r.lrange(key, 0, -1)])
            calls.append(int(r.get(f"{ns}:calls:{rnd}") or 0))
        go(r, ns, ROUNDS + 1)
        for p in procs:
            out, _ = p.communicate(timeout=60)
            assert p.returncode == 0
            stats.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    totals = {k: sum(s.get(k, 0) for s in stats) for k in ("coalesced", "followed", "takeovers")}
    print(f"MEASURED redlock stampede round times: {[round(d, 3) for d in durations]} s; "
          f"stats {totals}")
    assert calls == [1] * ROUNDS
    for rnd, results in enumerate(rounds, 1):
        assert len(results) == PROCESSES * THREADS
        assert [res["error"] for res in results if res["error"]] == []
        values = {json.dumps(res["value"], sort_keys=True) for res in results}
        assert len(values) == 1, f"round {rnd}: {values}"
        assert results[0]["value"]["round"] == rnd
    # One upstream call per round, plus each process's own warm-up key.
    assert sum(s["upstream_calls"] for s in stats) == ROUNDS + PROCESSES
