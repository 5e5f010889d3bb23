"""A leader SIGSTOPped past its lease cannot overwrite the newer leader's value (fencing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from fleetcache import Cache, Policy
from fleetcache.locking import FencedLock, SetNxLock
from fleetcache.testing.waiting import wait_until

LEADER = Path(__file__).with_name("leader_proc.py")
LOCK_TTL = 0.5


def paused_leader_trial(node: Any, r: redis.Redis, trial: int, lock: str,
                        use_async: bool = False) -> dict[str, Any]:
    """Run one trial; return what is stored at the end and what each leader saw.

    With ``use_async`` the old leader runs AsyncCache (the follower stays sync: it only has
    to take over and write with a newer fence)."""
    tag = f"{trial}{lock}{'a' if use_async else 's'}"
    ns, counter, go = f"paused{tag}", f"t:{tag}:calls", f"t:{tag}:go"
    proc = subprocess.Popen(
        [sys.executable, str(LEADER), "--url", node.url, "--namespace", ns, "--counter", counter,
         "--lock-ttl", str(LOCK_TTL), "--lock", lock, "--go", go, "--value", "old",
         *(["--async"] if use_async else [])],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        wait_until(lambda: r.get(counter) == b"1", 20, "the old leader's compute to start")
        os.kill(proc.pid, signal.SIGSTOP)
        policy = Policy(lock_ttl=LOCK_TTL, wait_timeout=10)
        lock_obj = (FencedLock if lock == "fenced" else SetNxLock)(r)
        with Cache(r, namespace=ns, lock=lock_obj, policy=policy) as cache:
            started = time.monotonic()
            new = cache.get_or_set({"prompt": "leader"}, lambda: r.incr(counter) and "new")
            took_over_after = time.monotonic() - started
            assert cache.stats.takeovers == 1
            assert new == "new"
            os.kill(proc.pid, signal.SIGCONT)
            r.rpush(go, "go")
            out, _ = proc.communicate(timeout=20)
            assert proc.returncode == 0
            old = json.loads(out.strip().splitlines()[-1])
            stored = cache.get({"prompt": "leader"})
        return {"stored": stored, "old": old, "took_over_after": took_over_after,
                "calls": int(r.get(counter) or 0)}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_paused_leader_never_overwrites_the_newer_value(r: redis.Redis, redis_node: Any,
                                                        use_async: bool) -> None:
    """10 trials: old leader SIGSTOPped past its lease, a follower takes over and writes,
    the old leader resumes and finishes: the stored value is the new leader's every time,
    the old leader's caller still gets its own value, and its write is counted as refused."""
    stale = 0
    for trial in range(10):
        res = paused_leader_trial(redis_node, r, trial, "fenced", use_async)
        assert res["calls"] == 2
        assert res["old"]["value"] == "old"
        assert res["old"]["stats"]["writes_refused"] == 1
        assert res["old"]["stats"]["leases_lost"] == 1
        assert res["took_over_after"] >= LOCK_TTL * 0.5
        stale += res["stored"] != "new"
    assert stale == 0


def test_claim_fence_refuses_the_stale_write_of_an_unfenced_lock(r: redis.Redis,
                                                                   redis_node: Any) -> None:
    """SetNxLock hands out no fence, yet the resumed old leader's write is refused too: the
    new leader's claim took a fence from the data's Redis (hardening item 12; before, the
    stale write landed).  writes_refused == 1 shows the old leader did try to write."""
    res = paused_leader_trial(redis_node, r, 99, "setnx")
    assert res["calls"] == 2
    assert res["old"]["value"] == "old"
    assert res["stored"] == "new"
    assert res["old"]["stats"]["writes_refused"] == 1
