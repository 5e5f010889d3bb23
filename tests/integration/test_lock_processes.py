"""Locks contended by real processes: mutual exclusion and fence order."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

WORKER = Path(__file__).with_name("lock_worker.py")


def contend(kind: str, urls: list[str], r: redis.Redis, processes: int,
            seconds: float) -> tuple[list[dict[str, Any]], list[int]]:
    """Run ``processes`` workers on one lock name; return their reports and the fences."""
    name = f"contend:{uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "--lock", kind, "--urls", ",".join(urls),
             "--name", name, "--seconds", str(seconds), "--id", str(i)],
            stdout=subprocess.PIPE, text=True, env=env)
        for i in range(processes)
    ]
    try:
        for i in range(processes):
            r.rpush(f"{name}:go:{i}", "go")
        reports = []
        for p in procs:
            out, _ = p.communicate(timeout=seconds + 60)
            assert p.returncode == 0
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    fences = [int(x) for x in r.lrange(f"{name}:fences", 0, -1)]
    return reports, fences


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["setnx", "fenced", "redis-lock", "redlock"])
def test_contended_mutual_exclusion_across_processes(kind: str, r: redis.Redis,
                                                     redis_node: Any, make_nodes: Any) -> None:
    """6 processes contend for one name for 5 s (Redlock: over 5 masters): no two ever hold
    it at once, nobody gives up within the wait bound, and (fenced, redlock) fences increase
    strictly in holding order."""
    urls, book = [redis_node.url], r
    if kind == "redlock":
        urls = [node.url for node in make_nodes(5)]
        book = redis.Redis.from_url(urls[0], socket_timeout=5)  # the workers' bookkeeping
    reports, fences = contend(kind, urls, book, processes=6, seconds=5.0)
    assert sum(rep["violations"] for rep in reports) == 0
    assert sum(rep["give_ups"] for rep in reports) == 0
    grants = sum(rep["grants"] for rep in reports)
    print(f"MEASURED {kind}: {grants} grants in 5 s by 6 processes, "
          f"worst wait p99 {max(rep['wait_p99'] for rep in reports):.3f} s")
    assert grants == len(fences) >= 6
    if kind in ("fenced", "redlock"):
        assert all(b > a for a, b in itertools.pairwise(fences))
