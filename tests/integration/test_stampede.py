"""Fleet-wide stampedes: many processes × threads on one missing key, through the bench
harness (``python -m fleetcache bench stampede --json``), which counts upstream calls with
INCR in Redis per round and reports every caller's value and error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import redis


def stampede(url: str, *args: str) -> dict[str, Any]:
    """Run the stampede harness against ``url`` and return its JSON report."""
    proc = subprocess.run(
        [sys.executable, "-m", "fleetcache", "bench", "stampede", "--redis", url, "--json",
         *args],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def assert_one_call_per_round(report: dict[str, Any], rounds: int, callers: int) -> None:
    """Every round: exactly one upstream call, every caller answered, all values equal."""
    assert len(report["rounds"]) == rounds
    for rnd in report["rounds"]:
        assert rnd["upstream_calls"] == 1, rnd
        assert rnd["callers"] == callers, rnd
        assert rnd["errors"] == [], rnd
        assert rnd["equal_values"], rnd
    assert report["rounds_with_one_call"] == rounds
    assert report["total_upstream_calls"] == rounds


@pytest.mark.slow
def test_8x4_one_upstream_call_in_each_of_20_rounds(r: redis.Redis, redis_node: Any) -> None:
    """8 processes × 4 threads on one missing key: 1 upstream call and equal values for all
    32 callers, in each of 20 rounds with fresh keys."""
    report = stampede(redis_node.url, "--processes", "8", "--threads", "4", "--rounds", "20",
                      "--upstream", "0.2")
    assert_one_call_per_round(report, 20, 32)


@pytest.mark.slow
@pytest.mark.parametrize("lock", ["setnx", "fenced"])
def test_call_outliving_the_lock_ttl_is_made_once(lock: str, r: redis.Redis,
                                                 redis_node: Any) -> None:
    """lock_ttl 1 s, upstream 1.5 s, 8 × 4: the watchdog keeps the lease, so 1 upstream
    call per round and no exception to any caller."""
    report = stampede(redis_node.url, "--processes", "8", "--threads", "4", "--rounds", "3",
                      "--upstream", "1.5", "--lock-ttl", "1", "--lock", lock)
    assert_one_call_per_round(report, 3, 32)
    assert report["cache_stats"]["leases_lost"] == 0
    assert report["cache_stats"]["writes_refused"] == 0


@pytest.mark.slow
def test_no_key_without_ttl_after_stampede_and_soak(r: redis.Redis, redis_node: Any) -> None:
    """After stampedes with both locks and a soak of mixed traffic, every fleetcache key in
    Redis has a TTL (none at -1)."""
    stampede(redis_node.url, "--processes", "4", "--threads", "4", "--rounds", "3",
             "--upstream", "0.05", "--lock", "fenced")
    demo = subprocess.run(
        [sys.executable, "-m", "fleetcache", "demo", "--redis", redis_node.url, "--workers",
         "3", "--threads", "3", "--requests", "150", "--latency", "0.02", "--keep-keys"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert demo.returncode == 0, demo.stderr
    keys = list(r.scan_iter("fc:*"))
    assert keys, "the soak left no fleetcache keys to check"
    no_ttl = [k for k in keys if r.ttl(k) == -1]
    assert no_ttl == []


@pytest.mark.slow
def test_async_8x50_one_upstream_call_in_each_of_10_rounds(r: redis.Redis,
                                                          redis_node: Any) -> None:
    """8 processes × 50 asyncio tasks (AsyncCache) on one missing key: 1 upstream call and
    equal values for all 400 callers, in each of 10 rounds."""
    report = stampede(redis_node.url, "--async", "--processes", "8", "--tasks", "50",
                      "--rounds", "10", "--upstream", "0.2")
    assert_one_call_per_round(report, 10, 400)


@pytest.mark.slow
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_call_outliving_the_lock_ttl_async_and_redlock(use_async: bool, r: redis.Redis,
                                                      redis_node: Any) -> None:
    """lock_ttl 1 s, upstream 1.5 s through Redlock (3 throwaway masters), sync and
    asyncio: the watchdog keeps the quorum lease, 1 upstream call per round, no error."""
    report = stampede(redis_node.url, *(["--async", "--tasks", "8"] if use_async else []),
                      "--processes", "4", "--rounds", "2", "--upstream", "1.5",
                      "--lock-ttl", "1", "--lock", "redlock")
    callers = 4 * (8 if use_async else 4)
    assert_one_call_per_round(report, 2, callers)
