"""The fault soak (hardening issue): 4 processes x 8 threads for a minute against a link
that is cut, black-holed, delayed and reset at random, with junk published on the events
channel and the namespace invalidated now and then."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fleetcache.core import events
from fleetcache.core.keys import KeyLayout
from fleetcache.testing import FaultProxy
from fleetcache.testing.waiting import wait_until

WORKER = Path(__file__).with_name("soak_worker.py")
PROCESSES, THREADS = 4, 8
DURATION = float(os.environ.get("FLEETCACHE_SOAK_SECONDS", "60"))
REDIS_TIMEOUT, WAIT_TIMEOUT = 0.3, 3.0
#: The longest a call may take: the follower's wait plus a handful of commands that each
#: time out (a command is tried twice, each bounded by redis_timeout, plus a connect).
BOUND = WAIT_TIMEOUT + 12 * REDIS_TIMEOUT
CAP = 8  # Policy.max_connections in the workers


def faults(proxy: FaultProxy, admin: Any, until: float, rng: random.Random) -> list[str]:
    """Inject random faults until ``until``; return what was done, in order."""
    done: list[str] = []
    channel = KeyLayout("soak").channel
    junk = [b"r|\xff", b"g|x", b"g|" + b"9" * 30, b"\x00", b"e|", b"zz"]
    next_invalidate = time.monotonic() + 10
    while time.monotonic() < until:
        fault = rng.choice(["cut", "blackhole", "delay", "reset", "heal", "heal"])
        if fault == "delay":
            seconds = rng.uniform(0.02, 0.3)
            proxy.delay(seconds)
            done.append(f"delay {seconds:.2f}")
        else:
            getattr(proxy, fault)()
            done.append(fault)
        admin.publish(channel, rng.choice(junk))
        if time.monotonic() > next_invalidate:
            admin.eval(  # what invalidate() does, from outside: a new, larger generation
                "local t = redis.call('TIME'); local g = string.format('%.0f', "
                "t[1] * 1000000 + t[2]); redis.call('SET', KEYS[1], g, 'PX', ARGV[1]); "
                "redis.call('PUBLISH', ARGV[2], ARGV[3] .. g); return g",
                1, KeyLayout("soak").gen, 30 * 86400 * 1000, channel, events.GENERATION_PREFIX)
            done.append("invalidate")
            next_invalidate = time.monotonic() + 10
        time.sleep(min(rng.uniform(0.3, 2.5), max(0.0, until - time.monotonic())))
    proxy.heal()
    return done


@pytest.mark.slow
def test_fault_soak(fresh_node: Any) -> None:
    """Under a minute of random faults every call returned the right value or raised
    WaitTimeout, none took longer than its bound; afterwards every process answers hits in
    well under 5 ms, holds at most its pool cap of connections, the connections return to
    the baseline when the processes exit, and no key lacks a TTL."""
    admin = fresh_node.client()
    baseline = int(admin.info("clients")["connected_clients"])
    rng = random.Random(20261201)
    with FaultProxy(fresh_node.host, fresh_node.port) as proxy:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), "--url", proxy.url, "--name", f"soak-{n}",
                 "--threads", str(THREADS), "--duration", str(DURATION),
                 "--redis-timeout", str(REDIS_TIMEOUT), "--wait-timeout", str(WAIT_TIMEOUT),
                 "--bound", str(BOUND)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            for n in range(PROCESSES)
        ]
        try:
            done = faults(proxy, admin, time.monotonic() + DURATION, rng)
            reports = []
            for proc in procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line, "a worker died"
                reports.append(json.loads(line))
            live = [c for c in admin.client_list() if c.get("name", "").startswith("soak-")]
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("exit\n")
                proc.stdin.flush()
            for proc in procs:
                assert proc.wait(30) == 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    calls = sum(r["calls"] for r in reports)
    summary = {
        "faults": len(done), "calls": calls, "ok": sum(r["ok"] for r in reports),
        "errors": [r["errors"] for r in reports],
        "max_seconds": max(r["max_seconds"] for r in reports),
        "hit_median_ms": [round(r["hit_median_ms"], 3) for r in reports],
        "hit_p99_ms": [round(r["hit_p99_ms"], 3) for r in reports],
        "fail_open": sum(r["stats"]["fail_open"] for r in reports),
        "bad_messages": sum(r["stats"]["bad_messages"] for r in reports),
        "upstream_calls": sum(r["stats"]["upstream_calls"] for r in reports),
        "hits": sum(r["stats"]["hits"] for r in reports),
        "followed": sum(r["stats"]["followed"] for r in reports),
        "coalesced": sum(r["stats"]["coalesced"] for r in reports),
        "connections_idle": len(live),
    }
    print("soak:", json.dumps(summary))
    assert {"cut", "blackhole", "reset", "invalidate"} <= {d.split()[0] for d in done}
    assert calls > 1000
    assert summary["hits"] > 0
    assert summary["followed"] + summary["coalesced"] > 0
    for r in reports:
        assert r["wrong"] == []
        assert set(r["errors"]) <= {"WaitTimeout"}, r["errors"]
        assert r["over_bound"] == 0, f"a call took {r['max_seconds']:.2f}s > {BOUND}s"
        assert r["hit_misses"] == 0
        assert r["hit_median_ms"] < 5.0
    assert summary["ok"] >= 0.9 * calls
    assert len(live) <= PROCESSES * CAP  # the subscription is one of the pool's connections
    wait_until(lambda: int(admin.info("clients")["connected_clients"]) == baseline, 15,
               "the workers' connections to close")
    no_ttl = [k for k in admin.scan_iter("fc:*") if admin.pttl(k) < 0]
    assert no_ttl == []
    admin.close()
