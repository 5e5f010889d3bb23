"""fleetcache.metrics against a real Redis: Prometheus and OpenTelemetry exports of a
cache's counters, upstream time and follower wait."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest
import redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleetcache import AsyncCache, Cache, Policy
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.metrics import DEFAULT_BUCKETS, register_opentelemetry, register_prometheus
from fleetcache.metrics._common import counter_names
from fleetcache.testing.waiting import wait_until

REQ = {"model": "m", "messages": [{"role": "user", "content": "metrics"}]}
FORK = multiprocessing.get_context("fork")

Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(registry: CollectorRegistry) -> dict[Sample, float]:
    """Every sample of the registry's text exposition, parsed back."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(registry: CollectorRegistry, name: str, namespace: str) -> float | None:
    """One sample (labelled only with ``namespace``) of the exposition, or None."""
    return scrape(registry).get((name, frozenset({("namespace", namespace)})))


def slow(result: str, seconds: float) -> str:
    """A compute that takes ``seconds`` and returns ``result``."""
    time.sleep(seconds)
    return result


def lock_key(cache: Cache, request: Any) -> str:
    """The lock key of ``request``'s entry in the cache's current generation."""
    assert cache.generation is not None
    return KeyLayout(cache.namespace).entry(request_hash(request), cache.generation).lock


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh Prometheus registry for one test."""
    return CollectorRegistry()


@pytest.fixture
def second_client(redis_node: Any) -> Iterator[redis.Redis]:
    """Another client to the shared node (a second worker's connection)."""
    client = redis_node.client()
    try:
        yield client
    finally:
        client.close()


def test_hits_misses_and_upstream_calls_are_exported(
    r: redis.Redis, registry: CollectorRegistry
) -> None:
    """After one miss and N hits the exposition holds exactly hits N, misses 1, upstream 1."""
    n = 7
    with Cache(r, namespace="m-hits") as cache:
        register_prometheus(cache, registry)
        cache.get_or_set(REQ, lambda: "v")
        for _ in range(n):
            assert cache.get_or_set(REQ, lambda: "other") == "v"
        text = generate_latest(registry).decode()
        assert f'fleetcache_hits_total{{namespace="m-hits"}} {n}.0' in text.splitlines()
        assert value(registry, "fleetcache_hits_total", "m-hits") == n
        assert value(registry, "fleetcache_misses_total", "m-hits") == 1
        assert value(registry, "fleetcache_upstream_calls_total", "m-hits") == 1
        assert value(registry, "fleetcache_coalesced_total", "m-hits") == 0


def test_every_stats_counter_is_a_prometheus_counter(
    r: redis.Redis, registry: CollectorRegistry
) -> None:
    """Each counter of Stats is exported as fleetcache_<stat>_total with its current value."""
    with Cache(r, namespace="m-all") as cache:
        register_prometheus(cache, registry)
        cache.get_or_set(REQ, lambda: "v")
        samples = scrape(registry)
        snap = cache.stats.snapshot()
        assert set(snap) == set(counter_names())
        for name, count in snap.items():
            assert samples[(f"fleetcache_{name}_total",
                            frozenset({("namespace", "m-all")}))] == count, name
        families = {f.name: f for f in text_string_to_metric_families(
            generate_latest(registry).decode())}
        assert families["fleetcache_stale_served"].type == "counter"
        assert families["fleetcache_writes_refused"].documentation


def test_upstream_histogram_counts_each_compute_and_its_time(
    r: redis.Redis, registry: CollectorRegistry
) -> None:
    """The upstream histogram's count is the number of computes; its sum at least their time."""
    computes, pause = 3, 0.05
    with Cache(r, namespace="m-up") as cache:
        register_prometheus(cache, registry)
        assert value(registry, "fleetcache_upstream_seconds_count", "m-up") == 0
        for i in range(computes):
            cache.get_or_set({"i": i}, lambda: slow("v", pause))
            cache.get_or_set({"i": i}, lambda: "hit: not computed")
        assert cache.stats.upstream_calls == computes
        assert value(registry, "fleetcache_upstream_seconds_count", "m-up") == computes
        total = value(registry, "fleetcache_upstream_seconds_sum", "m-up")
        assert total is not None
        assert total >= computes * pause
        assert value(registry, "fleetcache_follower_wait_seconds_count", "m-up") == 0


def test_a_failed_compute_is_timed_too(r: redis.Redis, registry: CollectorRegistry) -> None:
    """A compute that raises is observed like one that returns (as upstream_calls counts it)."""

    def boom() -> str:
        time.sleep(0.02)
        raise RuntimeError("upstream down")

    with Cache(r, namespace="m-fail") as cache:
        register_prometheus(cache, registry)
        with pytest.raises(RuntimeError):
            cache.get_or_set(REQ, boom)
        assert value(registry, "fleetcache_upstream_seconds_count", "m-fail") == 1
        assert (value(registry, "fleetcache_upstream_seconds_sum", "m-fail") or 0) >= 0.02


def test_follower_wait_is_fed_by_another_cache_through_redis(
    r: redis.Redis, second_client: redis.Redis, registry: CollectorRegistry
) -> None:
    """Two Cache objects of one namespace share Redis but not flights: the second follows the
    first's lease through Redis, and its wait (at least the time the leader held) is timed."""
    held = 0.3
    release = threading.Event()
    results: dict[str, Any] = {}
    with Cache(r, namespace="m-follow") as a, Cache(second_client, namespace="m-follow") as b:
        register_prometheus(a, registry)
        register_prometheus(b, registry)

        def lead() -> None:
            results["a"] = a.get_or_set(REQ, lambda: release.wait(10) and "value")

        leader = threading.Thread(target=lead)
        leader.start()
        wait_until(lambda: a.generation is not None and r.exists(lock_key(a, REQ)), 5,
                   "the leader to take the lease")
        follower = threading.Thread(target=lambda: results.setdefault(
            "b", b.get_or_set(REQ, lambda: "computed by b")))
        follower.start()
        wait_until(lambda: b._notifier.waiting() == 1, 5, "b to wait as a follower")
        time.sleep(held)
        release.set()
        follower.join(10)
        leader.join(10)
        assert results == {"a": "value", "b": "value"}
        # Through Redis, not in-process coalescing: b followed, nobody coalesced.
        assert (b.stats.followed, b.stats.coalesced, b.stats.upstream_calls) == (1, 0, 0)
        assert (a.stats.followed, a.stats.coalesced, a.stats.upstream_calls) == (0, 0, 1)
        # One namespace: the two caches are added up in one series.
        assert value(registry, "fleetcache_follower_wait_seconds_count", "m-follow") == 1
        waited = value(registry, "fleetcache_follower_wait_seconds_sum", "m-follow")
        assert waited is not None
        assert held <= waited < 10
        assert value(registry, "fleetcache_upstream_seconds_count", "m-follow") == 1
        assert value(registry, "fleetcache_followed_total", "m-follow") == 1
        assert value(registry, "fleetcache_upstream_calls_total", "m-follow") == 1
        assert value(registry, "fleetcache_misses_total", "m-follow") == 2


def lead_in_child(url: str, namespace: str, held: float, conn: Connection) -> None:
    """In a child process: lead a miss of REQ whose compute takes ``held`` seconds."""
    try:
        client = redis.Redis.from_url(url)
        with Cache(client, namespace=namespace) as cache:
            conn.send(cache.get_or_set(REQ, lambda: slow("from the child", held)))
        client.close()
    except BaseException as exc:
        conn.send(repr(exc))
    finally:
        conn.close()


def test_follower_wait_when_the_leader_is_another_process(
    r: redis.Redis, redis_node: Any, registry: CollectorRegistry
) -> None:
    """A follower in this process waiting on a leader in another process is timed."""
    held = 0.5
    ours, theirs = FORK.Pipe()
    with Cache(r, namespace="m-proc") as cache:
        register_prometheus(cache, registry)
        child = FORK.Process(target=lead_in_child,
                             args=(redis_node.url, "m-proc", held, theirs))
        child.start()
        wait_until(lambda: bool(r.keys("fc:m-proc:*:lock")), 10, "the child to lead")
        assert cache.get_or_set(REQ, lambda: "computed here") == "from the child"
        assert ours.recv() == "from the child"
        child.join(10)
        assert (cache.stats.followed, cache.stats.upstream_calls) == (1, 0)
        assert value(registry, "fleetcache_follower_wait_seconds_count", "m-proc") == 1
        assert value(registry, "fleetcache_upstream_seconds_count", "m-proc") == 0


def test_two_namespaces_in_one_registry_both_export(
    r: redis.Redis, second_client: redis.Redis, registry: CollectorRegistry
) -> None:
    """Caches with different namespaces share one registry; each has its own series, and
    unregistering one leaves the other's."""
    with Cache(r, namespace="m-one") as one, Cache(second_client, namespace="m-two") as two:
        reg_one = register_prometheus(one, registry)
        reg_two = register_prometheus(two, registry)
        one.get_or_set(REQ, lambda: "1")
        for _ in range(3):
            two.get_or_set(REQ, lambda: "2")
        assert value(registry, "fleetcache_hits_total", "m-one") == 0
        assert value(registry, "fleetcache_hits_total", "m-two") == 2
        assert value(registry, "fleetcache_upstream_seconds_count", "m-one") == 1
        assert value(registry, "fleetcache_upstream_seconds_count", "m-two") == 1
        reg_one.unregister()
        assert value(registry, "fleetcache_hits_total", "m-one") is None
        assert value(registry, "fleetcache_upstream_seconds_count", "m-one") is None
        assert value(registry, "fleetcache_hits_total", "m-two") == 2
        reg_two.unregister()
        assert not any(name.startswith("fleetcache_") for name, _ in scrape(registry))
        assert one.stats._listeners == ()
        assert two.stats._listeners == ()


def test_registering_the_same_cache_twice_is_one_export(
    r: redis.Redis, registry: CollectorRegistry
) -> None:
    """A second registration of a cache returns the first handle and counts nothing twice."""
    with Cache(r, namespace="m-twice") as cache:
        first = register_prometheus(cache, registry)
        assert register_prometheus(cache, registry) is first
        cache.get_or_set(REQ, lambda: "v")
        assert value(registry, "fleetcache_misses_total", "m-twice") == 1
        assert value(registry, "fleetcache_upstream_seconds_count", "m-twice") == 1
        with first:
            assert first.registered
        assert not first.registered
        first.unregister()  # idempotent
        assert value(registry, "fleetcache_misses_total", "m-twice") is None
        again = register_prometheus(cache, registry)
        assert again is not first
        assert again.registered
        again.unregister()


def test_custom_buckets_and_a_mismatch(
    r: redis.Redis, second_client: redis.Redis, registry: CollectorRegistry
) -> None:
    """Histogram buckets are the caller's; a second cache asking for others is refused."""
    with Cache(r, namespace="m-b1") as one, Cache(second_client, namespace="m-b2") as two:
        register_prometheus(one, registry, buckets=[0.5, 1.0])
        one.get_or_set(REQ, lambda: "v")
        bucket = scrape(registry)[("fleetcache_upstream_seconds_bucket",
                                   frozenset({("namespace", "m-b1"), ("le", "0.5")}))]
        assert bucket == 1
        with pytest.raises(ValueError, match="same buckets"):
            register_prometheus(two, registry)
        register_prometheus(two, registry, buckets=(0.5, 1.0, float("inf")))
        with pytest.raises(ValueError, match="increasing"):
            register_prometheus(two, CollectorRegistry(), buckets=[1.0, 0.5])


def test_a_clashing_metric_name_registers_nothing(
    r: redis.Redis, registry: CollectorRegistry
) -> None:
    """A registry already holding a fleetcache metric name refuses the export, cleanly."""
    Counter("fleetcache_hits", "someone else's", registry=registry)
    with Cache(r, namespace="m-clash") as cache:
        with pytest.raises(ValueError, match="Duplicated"):
            register_prometheus(cache, registry)
        assert cache.stats._listeners == ()
        assert ("fleetcache_upstream_seconds_count",
                frozenset({("namespace", "m-clash")})) not in scrape(registry)


def test_async_cache_exports(r: redis.Redis, redis_node: Any, registry: CollectorRegistry) -> None:
    """An AsyncCache exports its counters and upstream time like the sync cache."""

    async def compute() -> str:
        await asyncio.sleep(0.02)
        return "v"

    async def body() -> None:
        client = redis_node.async_client()
        async with AsyncCache(client, namespace="m-async") as cache:
            register_prometheus(cache, registry)
            for _ in range(4):
                assert await cache.get_or_set(REQ, compute) == "v"
        await client.aclose()

    asyncio.run(body())
    assert value(registry, "fleetcache_hits_total", "m-async") == 3
    assert value(registry, "fleetcache_misses_total", "m-async") == 1
    assert value(registry, "fleetcache_upstream_seconds_count", "m-async") == 1
    assert (value(registry, "fleetcache_upstream_seconds_sum", "m-async") or 0) >= 0.02


def test_background_refresh_is_timed(r: redis.Redis, registry: CollectorRegistry) -> None:
    """A stale hit's background refresh is a compute of this process: it is timed too."""
    policy = Policy(ttl=0.2, stale_ttl=60)
    with Cache(r, namespace="m-swr", policy=policy) as cache:
        register_prometheus(cache, registry)
        cache.get_or_set(REQ, lambda: "old")
        time.sleep(0.3)
        assert cache.get_or_set(REQ, lambda: "new") == "old"
        wait_until(lambda: value(registry, "fleetcache_upstream_seconds_count", "m-swr") == 2,
                   10, "the background refresh to be timed")
        assert cache.get(REQ) == "new"
        assert cache.stats.refreshes == 1
        assert value(registry, "fleetcache_stale_served_total", "m-swr") == 1


def otel_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every data point the reader collects now, by metric name."""
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def by_namespace(points: list[Any]) -> dict[str, Any]:
    """Data points keyed by their namespace attribute."""
    return {str(p.attributes["namespace"]): p for p in points}


def test_opentelemetry_counters_and_histograms(
    r: redis.Redis, second_client: redis.Redis
) -> None:
    """With an SDK MeterProvider the observable counters and both histograms carry the
    expected values per namespace, and unregistering stops the reports."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    held = 0.2
    release = threading.Event()
    with Cache(r, namespace="o-a") as a, Cache(second_client, namespace="o-a") as b, \
            Cache(r, namespace="o-other") as other:
        reg_a = register_opentelemetry(a, meter)
        assert register_opentelemetry(a, meter) is reg_a
        register_opentelemetry(b, meter)
        register_opentelemetry(other, meter)
        leader = threading.Thread(
            target=lambda: a.get_or_set(REQ, lambda: release.wait(10) and "value"))
        leader.start()
        wait_until(lambda: a.generation is not None and r.exists(lock_key(a, REQ)), 5,
                   "the leader to take the lease")
        follower = threading.Thread(target=lambda: b.get_or_set(REQ, lambda: "b"))
        follower.start()
        wait_until(lambda: b._notifier.waiting() == 1, 5, "b to wait as a follower")
        time.sleep(held)
        release.set()
        follower.join(10)
        leader.join(10)
        for _ in range(5):
            a.get_or_set(REQ, lambda: "hit")
        other.get_or_set(REQ, lambda: "x")

        points = otel_points(reader)
        hits = by_namespace(points["fleetcache.hits"])
        assert isinstance(hits["o-a"], NumberDataPoint)
        assert (hits["o-a"].value, hits["o-other"].value) == (5, 0)
        assert by_namespace(points["fleetcache.misses"])["o-a"].value == 2
        assert by_namespace(points["fleetcache.followed"])["o-a"].value == 1
        assert set(counter_names()) <= {n.removeprefix("fleetcache.") for n in points}
        upstream = by_namespace(points["fleetcache.upstream.duration"])
        assert isinstance(upstream["o-a"], HistogramDataPoint)
        assert (upstream["o-a"].count, upstream["o-other"].count) == (1, 1)
        assert upstream["o-a"].sum >= held
        assert tuple(upstream["o-a"].explicit_bounds) == DEFAULT_BUCKETS  # seconds, not ms
        wait = by_namespace(points["fleetcache.follower.wait.duration"])
        assert wait["o-a"].count == 1
        assert wait["o-a"].sum >= held

        other.get_or_set(REQ, lambda: "x")
        for reg in (reg_a, register_opentelemetry(other, meter)):
            reg.unregister()
        points = otel_points(reader)
        assert set(by_namespace(points["fleetcache.hits"])) == {"o-a"}  # b is still there
        assert by_namespace(points["fleetcache.hits"])["o-a"].value == 0  # b's own hits
    provider.shutdown()


def test_a_raising_listener_does_not_break_get_or_set(
    r: redis.Redis, second_client: redis.Redis, registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A listener that raises on every duration leaves leaders, followers and the other
    listeners working; it is logged once, at debug level."""

    def broken(name: str, seconds: float) -> None:
        raise RuntimeError(f"broken listener ({name})")

    release = threading.Event()
    results: dict[str, Any] = {}
    caplog.set_level(logging.DEBUG, logger="fleetcache")
    with Cache(r, namespace="m-broken") as a, Cache(second_client, namespace="m-broken") as b:
        for cache in (a, b):
            cache.stats.add_listener(broken)
            register_prometheus(cache, registry)
        assert a.get_or_set({"k": 0}, lambda: "first") == "first"
        assert a.get_or_set({"k": 1}, lambda: "second") == "second"
        leader = threading.Thread(target=lambda: results.setdefault(
            "a", a.get_or_set(REQ, lambda: release.wait(10) and "value")))
        leader.start()
        wait_until(lambda: a.generation is not None and r.exists(lock_key(a, REQ)), 5,
                   "the leader to take the lease")
        follower = threading.Thread(target=lambda: results.setdefault(
            "b", b.get_or_set(REQ, lambda: "b")))
        follower.start()
        wait_until(lambda: b._notifier.waiting() == 1, 5, "b to wait as a follower")
        release.set()
        follower.join(10)
        leader.join(10)
        assert results == {"a": "value", "b": "value"}
        assert value(registry, "fleetcache_upstream_seconds_count", "m-broken") == 3
        assert value(registry, "fleetcache_follower_wait_seconds_count", "m-broken") == 1
    logged = [rec for rec in caplog.records if "listener" in rec.getMessage()]
    assert len(logged) == 2  # once per cache (a: three failures, b: one)
    assert all(rec.levelno == logging.DEBUG for rec in logged)


def registered_in_child(cache: Cache, registry: CollectorRegistry, conn: Connection) -> None:
    """In a forked child: one miss, then send back what the child's registry shows."""
    try:
        cache.get_or_set({"child": True}, lambda: "v")
        conn.send((value(registry, "fleetcache_upstream_seconds_count", "m-fork"),
                   value(registry, "fleetcache_misses_total", "m-fork")))
    except BaseException as exc:
        conn.send(repr(exc))
    finally:
        conn.close()


def test_registration_survives_fork(r: redis.Redis, registry: CollectorRegistry) -> None:
    """A forked child keeps exporting its cache: listeners survive, counters restart at 0."""
    ours, theirs = FORK.Pipe()
    with Cache(r, namespace="m-fork") as cache:
        register_prometheus(cache, registry)
        cache.get_or_set({"parent": True}, lambda: "v")
        child = FORK.Process(target=registered_in_child, args=(cache, registry, theirs))
        child.start()
        got = ours.recv()
        child.join(10)
    # The histogram is the parent's copy plus the child's compute; misses are the child's.
    assert got == (2, 1)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)


OPTIONAL = "('prometheus_client', 'opentelemetry')"


def test_importing_fleetcache_imports_no_metrics_library() -> None:
    """import fleetcache and fleetcache.metrics load neither prometheus_client nor
    opentelemetry (redis-py >= 8 imports opentelemetry itself when it is installed: only
    what fleetcache adds on top of redis counts)."""
    result = run_python(
        "import sys, redis, redis.asyncio\n"
        f"before = {{m for m in sys.modules if m.startswith({OPTIONAL})}}\n"
        "import fleetcache, fleetcache.metrics\n"
        f"after = {{m for m in sys.modules if m.startswith({OPTIONAL})}}\n"
        "print(sorted(after - before), 'prometheus_client' in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] False"


def test_a_missing_library_says_what_to_install() -> None:
    """Without prometheus_client and opentelemetry, fleetcache and fleetcache.metrics import
    and the register functions raise an ImportError naming the fleetcache[metrics] extra."""
    result = run_python(
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "sys.modules['opentelemetry'] = None\n"
        "import fleetcache\n"
        "from fleetcache.metrics import register_prometheus, register_opentelemetry\n"
        "for fn in (register_prometheus, register_opentelemetry):\n"
        "    try:\n"
        "        fn(object())\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all("pip install 'fleetcache[metrics]'" in line for line in lines)
    assert "prometheus_client" in lines[0]
    assert "opentelemetry-api" in lines[1]


def test_something_that_is_not_a_cache_is_refused(registry: CollectorRegistry) -> None:
    """Registering an object without stats and namespace raises TypeError."""
    with pytest.raises(TypeError, match="Cache or AsyncCache"):
        register_prometheus(object(), registry)  # type: ignore[arg-type]
