"""Freshness on real Redis: stale-while-revalidate, XFetch, hot keys, max_age,
cacheability and per-call policies (the freshness issue).  Worker processes are
``fleet_worker.py``; upstream calls are counted with INCR in Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from fleetcache import MISS, AsyncCache, Cache, Policy, cacheable
from fleetcache.core import envelope
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.testing.waiting import wait_until

WORKER = Path(__file__).with_name("fleet_worker.py")
REQ = {"model": "m", "messages": [{"role": "user", "content": "fresh?"}], "temperature": 0}
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def start_workers(url: str, n: int, *args: str) -> list[subprocess.Popen[str]]:
    """Start ``n`` worker processes with the same arguments."""
    return [subprocess.Popen([sys.executable, str(WORKER), "--url", url, *args],
                             stdout=subprocess.PIPE, text=True, env=ENV) for _ in range(n)]


def reports(procs: list[subprocess.Popen[str]], timeout: float = 60) -> list[dict[str, Any]]:
    """Each worker's JSON report (killing any that overruns)."""
    out = []
    for proc in procs:
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == 0, stdout
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def release_burst(r: redis.Redis, ready: str, go: str, callers: int) -> None:
    """Wait until every caller is parked on the barrier, then release them all at once."""
    wait_until(lambda: int(r.get(ready) or 0) == callers, 30, "every caller to be ready")
    r.rpush(go, *["go"] * callers)


def entry(r: redis.Redis, ns: str, request: Any = REQ) -> envelope.Envelope | None:
    """The stored envelope of ``request`` in the namespace's current generation."""
    gen = r.get(f"fc:{ns}:gen")
    if gen is None:
        return None
    raw = r.get(KeyLayout(ns).value_key(request_hash(request), int(gen)))
    assert raw is None or isinstance(raw, bytes)
    return None if raw is None else envelope.decode(raw)


def store_stale(r: redis.Redis, ns: str, value: str, policy: Policy) -> None:
    """Store ``value`` for REQ and wait until it is past its freshness, in its stale window."""
    with Cache(r, namespace=ns, policy=policy) as cache:
        assert cache.set(REQ, value)
    stored = entry(r, ns)
    assert stored is not None
    wait_until(lambda: time.time() > stored.fresh_until, 10, "the entry to turn stale")


@pytest.mark.slow
def test_swr_8x4_serve_stale_at_once_one_refresh(r: redis.Redis, redis_node: Any) -> None:
    """8 processes x 4 threads hit a stale entry at once while its refresh takes 0.5 s:
    every caller returns the stale value well under the refresh time, exactly one upstream
    call is made, and the next read sees the refreshed value."""
    ns = "swr84"
    store_stale(r, ns, "old", Policy(ttl=0.3, stale_ttl=60))
    procs = start_workers(redis_node.url, 8, "--namespace", ns, "--mode", "burst",
                          "--threads", "4", "--counter", "t:swr:calls", "--ready", "t:swr:ready",
                          "--go", "t:swr:go", "--upstream", "0.5", "--ttl", "0.3",
                          "--stale-ttl", "60")
    release_burst(r, "t:swr:ready", "t:swr:go", 32)
    calls = [c for rep in reports(procs) for c in rep["calls"]]
    assert len(calls) == 32
    assert {c["value"] for c in calls} == {"old"}
    assert max(c["seconds"] for c in calls) < 0.25, "a caller waited for the refresh"
    wait_until(lambda: (e := entry(r, ns)) is not None and e.value == "new", 10,
               "the refreshed value")
    assert int(r.get("t:swr:calls") or 0) == 1
    with Cache(r, namespace=ns, policy=Policy(ttl=0.3, stale_ttl=60)) as cache:
        assert cache.get(REQ) == "new"


@pytest.mark.slow
def test_swr_refresher_killed_stale_stays_then_one_new_leader(r: redis.Redis,
                                                              redis_node: Any) -> None:
    """The refreshing process is SIGKILLed mid-refresh: the entry stays servable (stale)
    meanwhile, and once the dead refresher's lease expires exactly one new refresh runs."""
    ns = "swrkill"
    policy = Policy(ttl=0.3, stale_ttl=30, lock_ttl=1.0, wait_timeout=10)
    store_stale(r, ns, "old", policy)
    proc = start_workers(redis_node.url, 1, "--namespace", ns, "--mode", "burst",
                         "--threads", "1", "--counter", "t:kill:calls", "--pid-key",
                         "t:kill:pid", "--ready", "t:kill:ready", "--go", "t:kill:go",
                         "--upstream", "60", "--ttl", "0.3", "--stale-ttl", "30",
                         "--lock-ttl", "1")[0]
    try:
        release_burst(r, "t:kill:ready", "t:kill:go", 1)
        wait_until(lambda: r.get("t:kill:pid") is not None, 10, "the refresh to start")
        assert int(r.get("t:kill:pid") or 0) == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    calls: list[str] = []

    def compute() -> str:
        calls.append("x")
        return "new"

    with Cache(r, namespace=ns, policy=policy) as cache:
        served: list[Any] = []
        slowest = 0.0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not calls:
            start = time.monotonic()
            served.append(cache.get_or_set(REQ, compute))
            slowest = max(slowest, time.monotonic() - start)
        wait_until(lambda: cache.get(REQ) == "new", 10, "the new leader's value")
        first_new = served.index("new") if "new" in served else len(served)
        assert served[:first_new] == ["old"] * first_new
        assert set(served[first_new:]) <= {"new"}
        assert first_new >= 1, "the entry was not served while the dead lease lived"
        assert slowest < 0.25, "a caller waited instead of getting the stale value"
        assert calls == ["x"]
        assert cache.stats.refreshes == 1
    assert int(r.get("t:kill:calls") or 0) == 1


@pytest.mark.slow
def test_xfetch_continuous_hits_never_miss(r: redis.Redis, redis_node: Any) -> None:
    """XFetch (β 1) with ttl 2 s and continuous hits from 4 processes for 10 s: after
    warm-up no caller sees a miss, and upstream calls stay near one per ttl period.

    XFetch refreshes about β·δ·ln(λ·δ) before expiry (δ the compute time, λ the entry's
    hit rate fleet-wide): here δ = 50 ms and λ in the thousands, so about 0.3 s early,
    about 1.2 refreshes per 2 s period."""
    ns = "xfetch"
    procs = start_workers(redis_node.url, 4, "--namespace", ns, "--mode", "loop",
                          "--threads", "2", "--counter", "t:xf:calls", "--upstream", "0.05",
                          "--ttl", "2", "--early-refresh", "1.0", "--duration", "10",
                          "--warmup", "1")
    reps = reports(procs)
    calls = sum(len(rep["calls"]) for rep in reps)
    assert calls > 1000
    assert sum(rep["misses_after_warmup"] for rep in reps) == 0  # every lookup found it
    early = sum(rep["stats"]["early_refreshes"] for rep in reps)
    upstream = int(r.get("t:xf:calls") or 0)
    assert early >= 3
    assert upstream <= 1 + 1.5 * 10 / 2, f"{upstream} upstream calls in 10 s with ttl 2 s"


def test_hot_keys_slide_never_shorten_and_stop_at_max_age(r: redis.Redis) -> None:
    """Before the threshold the TTL is untouched; from the threshold on each hit slides
    freshness (and the key's TTL) forward, never shorter; the counter has a TTL; max_age
    still ends the hot entry on time."""
    policy = Policy(ttl=2, hot_threshold=5, hot_window=30, hot_ttl=6, max_age=4)
    with Cache(r, namespace="hot", policy=policy) as cache:
        assert cache.get_or_set(REQ, lambda: "v") == "v"
        gen = cache.generation
        assert gen is not None
        keys = KeyLayout("hot").entry(request_hash(REQ), gen)
        first = r.pttl(keys.value)
        assert 0 < first <= 2000
        for _ in range(3):  # reads 1..3 (the miss's look was read 0 but not counted)
            assert cache.get(REQ) == "v"
        assert r.pttl(keys.value) <= first
        assert not r.exists(keys.slid)
        assert 0 < r.pttl(keys.hits) <= 30_000
        assert cache.get(REQ) == "v"  # read 4: still below 5
        assert cache.get(REQ) == "v"  # read 5: hot
        assert cache.stats.hot_promotions == 1
        slid = r.pttl(keys.value)
        assert slid > 2000, "the hot hit did not slide the TTL"
        assert slid <= 4000  # capped by max_age (created + 4 s), not now + 6 s
        assert int(r.get(keys.slid) or 0) > 0
        assert r.pttl(keys.slid) > 0
        for _ in range(5):
            cache.get(REQ)
            assert r.pttl(keys.value) <= slid + 50  # never beyond max_age...
        stored = entry(r, "hot")
        assert stored is not None
        wait_until(lambda: time.time() > stored.created + 4, 10, "max_age to pass")
        assert cache.get(REQ) is MISS
        assert cache.stats.too_old + int(not r.exists(keys.value)) >= 1


def test_hot_sliding_never_shortens_a_long_entry(r: redis.Redis) -> None:
    """A 1 h entry made hot with hot_ttl 10 s keeps its 1 h TTL (the seed's EXPIRE on every
    hit shortened it)."""
    policy = Policy(ttl=3600, hot_threshold=2, hot_ttl=10)
    with Cache(r, namespace="hotlong", policy=policy) as cache:
        cache.get_or_set(REQ, lambda: "v")
        for _ in range(5):
            assert cache.get(REQ) == "v"
        keys = KeyLayout("hotlong").entry(request_hash(REQ), cache.generation or 0)
        assert r.pttl(keys.value) > 3_500_000
        assert not r.exists(keys.slid)


def test_max_age_is_never_exceeded_by_stale_serving(r: redis.Redis) -> None:
    """An entry older than max_age is a miss even inside its stale window."""
    policy = Policy(ttl=0.2, stale_ttl=60, max_age=0.6)
    with Cache(r, namespace="maxage", policy=policy) as cache:
        assert cache.get_or_set(REQ, lambda: "v1") == "v1"
        stored = entry(r, "maxage")
        assert stored is not None
        wait_until(lambda: time.time() > stored.created + 0.6, 5, "max_age to pass")
        assert cache.get(REQ) is MISS
        assert cache.get_or_set(REQ, lambda: "v2") == "v2"


@pytest.mark.slow
def test_uncacheable_value_reaches_32_callers_with_one_call(r: redis.Redis,
                                                           redis_node: Any) -> None:
    """A completion that calls a tool is not stored, yet 32 concurrent identical callers
    across 4 processes make one upstream call and all get it; nothing of it outlives the
    hand-off."""
    ns = "toolcall"
    procs = start_workers(redis_node.url, 4, "--namespace", ns, "--mode", "burst",
                          "--threads", "8", "--counter", "t:tc:calls", "--ready", "t:tc:ready",
                          "--go", "t:tc:go", "--upstream", "0.3", "--tool-call",
                          "--value", "weather")
    release_burst(r, "t:tc:ready", "t:tc:go", 32)
    reps = reports(procs)
    calls = [c for rep in reps for c in rep["calls"]]
    assert len(calls) == 32
    for call in calls:
        tool_calls = call["value"]["choices"][0]["message"]["tool_calls"]
        assert tool_calls[0]["function"]["arguments"] == '"weather"'
    assert int(r.get("t:tc:calls") or 0) == 1
    assert sum(rep["stats"]["not_cached"] for rep in reps) == 1
    assert entry(r, ns) is None
    gen = int(r.get(f"fc:{ns}:gen") or 0)
    handoff = KeyLayout(ns).entry(request_hash(REQ), gen).handoff
    assert 0 < r.pttl(handoff) <= 10_000


def test_per_call_policy_overrides_the_cache_policy(r: redis.Redis) -> None:
    """policy= on one call governs that call: its TTL, its cacheability."""
    with Cache(r, namespace="percall", policy=Policy(ttl=3600)) as cache:
        short = Policy(ttl=5)
        assert cache.get_or_set({"q": 1}, lambda: "a", policy=short) == "a"
        keys = KeyLayout("percall").entry(request_hash({"q": 1}), cache.generation or 0)
        assert 0 < r.pttl(keys.value) <= 5000
        never = Policy(cache_if=cacheable.never)
        assert cache.get_or_set({"q": 2}, lambda: "b", policy=never) == "b"
        assert cache.get({"q": 2}) is MISS
        assert cache.stats.not_cached == 1
        with pytest.raises(TypeError, match="Policy"):
            cache.get_or_set({"q": 3}, lambda: "c", policy={"ttl": 1})  # type: ignore[arg-type]


def test_a_failed_refresh_keeps_serving_the_stale_entry(r: redis.Redis) -> None:
    """A background refresh that raises is logged and counted; callers keep getting the
    stale value (never the exception) until the stale window ends."""
    policy = Policy(ttl=0.2, stale_ttl=30)
    store_stale(r, "failrefresh", "old", policy)
    failed = threading.Event()

    def boom() -> str:
        failed.set()
        raise RuntimeError("upstream down")

    with Cache(r, namespace="failrefresh", policy=policy) as cache:
        assert cache.get_or_set(REQ, boom) == "old"
        assert failed.wait(5)
        wait_until(lambda: cache.stats.refresh_failures == 1, 5, "the failure to be counted")
        assert cache.get_or_set(REQ, lambda: "not yet") == "old"  # stale at once, again
        assert cache.stats.stale_served >= 1


def test_async_swr_refreshes_in_a_task_and_close_stops_it(r: redis.Redis,
                                                          redis_node: Any) -> None:
    """AsyncCache serves a stale entry at once and refreshes it in a task; a refresh still
    running when close() is called is waited for (bounded), then cancelled: no task
    outlives the cache."""
    import asyncio  # noqa: PLC0415

    policy = Policy(ttl=0.2, stale_ttl=30)
    store_stale(r, "aswr", "old", policy)

    async def body() -> None:
        baseline = set(asyncio.all_tasks())
        cache = AsyncCache(redis_node.async_client(), namespace="aswr", policy=policy)
        refreshed = asyncio.Event()

        async def quick() -> str:
            refreshed.set()
            return "new"

        assert await cache.get_or_set(REQ, quick) == "old"
        async with asyncio.timeout(5):
            await refreshed.wait()
        for _ in range(500):
            if await cache.get(REQ) == "new":
                break
            await asyncio.sleep(0.01)
        assert await cache.get(REQ) == "new"
        assert cache.stats.refreshes == 1
        store_stale(r, "aswr", "old again", policy)
        started = asyncio.Event()

        async def hang() -> str:
            started.set()
            await asyncio.sleep(60)
            return "never"

        # The first refresh may still be releasing its lease: hits retry until one starts.
        async with asyncio.timeout(5):
            while not started.is_set():
                assert await cache.get_or_set(REQ, hang) == "old again"
                await asyncio.sleep(0.01)
        await cache.close(timeout=0.2)
        leftover = set(asyncio.all_tasks()) - baseline - {asyncio.current_task()}
        assert leftover == set(), leftover

    asyncio.run(body())


class SteppedClock:
    """The real clocks, with a monotonic clock the test can step forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def step(self, seconds: float) -> None:
        """Move the monotonic clock ``seconds`` ahead."""
        self.offset += seconds

    def monotonic(self) -> float:
        """The real monotonic clock plus the steps taken."""
        return time.monotonic() + self.offset

    def time(self) -> float:
        """The real wall clock."""
        return time.time()


def test_hot_hits_are_plain_gets_yet_counted_exactly(r: redis.Redis) -> None:
    """Once this process knows an entry is hot, its hits are plain GETs (no script) for a
    moment; the reads they served are added at the next script run, so the count in Redis
    is exact, and that run slides the freshness again."""
    policy = Policy(ttl=1, hot_threshold=3, hot_window=60, hot_ttl=10)  # trust: 0.1 s
    clock = SteppedClock()
    with Cache(r, namespace="hotexact", policy=policy, clock=clock) as cache:
        cache.set(REQ, "v")
        keys = KeyLayout("hotexact").entry(request_hash(REQ), cache.generation or 0)
        for _ in range(3):
            assert cache.get(REQ) == "v"
        assert cache.stats.hot_promotions == 1
        r.config_resetstat()
        for _ in range(50):
            assert cache.get(REQ) == "v"
        stats: dict[str, Any] = r.info("commandstats")
        assert "cmdstat_evalsha" not in stats or stats["cmdstat_evalsha"]["calls"] <= 1
        assert int(r.get(keys.hits) or 0) <= 4
        slid_before = int(r.get(keys.slid) or 0)
        clock.step(0.15)  # the trust (hot_ttl/100) runs out: the next hit runs the script
        assert cache.get(REQ) == "v"
        assert int(r.get(keys.hits) or 0) == 3 + 50 + 1
        assert int(r.get(keys.slid) or 0) > slid_before
