"""fleetcache on a real Redis Cluster (3 masters, 3 replicas): the same guarantees as on one
node -- one upstream call per key across processes, hits in one round trip to the owning
master, every script's keys in one slot -- and notifications that stay on the shard that
owns the entry (sharded pub/sub, one connection per master per process)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from fleetcache import MISS, AsyncCache, Cache, Policy
from fleetcache.core import events
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.locking import FencedLock
from fleetcache.testing.waiting import wait_until

WORKER = Path(__file__).with_name("cluster_worker.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def ns() -> str:
    """A fresh namespace."""
    return f"cl-{uuid.uuid4().hex[:8]}"


def test_every_script_key_of_an_entry_is_in_one_slot() -> None:
    """Over 2,000 requests, an entry's keys, its lock's fence counter and its shard channel
    hash to one slot, and the entries spread over every slot range."""
    layout = KeyLayout("slots")
    masters_hit = set()
    for i in range(2000):
        keys = layout.entry(request_hash({"i": i}), 7)
        names = [
            keys.value,
            keys.lock,
            keys.error,
            keys.fence,
            keys.handoff,
            keys.hits,
            keys.slid,
            FencedLock.fence_key(_lock_view(), keys.lock),
            events.shard_channel(keys.value),
        ]
        slots = {key_slot(n.encode()) for n in names}
        assert len(slots) == 1, names
        masters_hit.add(slots.pop() * 3 // 16384)
    assert masters_hit == {0, 1, 2}


def _lock_view() -> Any:
    """A stand-in exposing what FencedLock.fence_key reads (the key prefix)."""
    view = FencedLock.__new__(FencedLock)
    view.prefix = ""
    return view


def test_sync_cache_on_a_cluster(cluster: Any) -> None:
    """get_or_set, get, set, delete, invalidate and purge work on a Cluster client."""
    with Cache(cluster.client(), namespace=ns(), policy=Policy(ttl=60)) as cache:
        for i in range(30):
            assert cache.get_or_set({"i": i}, functools.partial(dict, v=i)) == {"v": i}
        assert cache.get({"i": 3}) == {"v": 3}
        assert cache.set({"i": 3}, "x") is True
        assert cache.get({"i": 3}) == "x"
        assert cache.delete({"i": 3}) is True
        assert cache.get({"i": 3}) is MISS
        cache.invalidate()
        assert cache.get({"i": 4}) is MISS
        assert cache.purge() >= 29 * 2  # value and fence of every old entry, on every master
        assert cache.stats.upstream_calls == 30


def test_async_cache_on_a_cluster(cluster: Any) -> None:
    """An AsyncCache on an asyncio Cluster client: 20 concurrent first calls make one."""

    async def main() -> tuple[set[str], int]:
        async with AsyncCache(cluster.async_client(), namespace=ns()) as acache:
            calls = 0

            async def compute() -> str:
                nonlocal calls
                calls += 1
                await asyncio.sleep(0.1)
                return "v"

            got = await asyncio.gather(*(acache.get_or_set({"k": 1}, compute) for _ in range(20)))
            assert await acache.get({"k": 1}) == "v"
            return set(got), calls

    assert asyncio.run(main()) == ({"v"}, 1)


def test_a_hit_is_one_round_trip_to_the_owning_master(cluster: Any) -> None:
    """A hit sends one GET, to the master owning the entry's slot, and nothing elsewhere."""
    name = ns()
    with Cache(cluster.client(), namespace=name) as cache:
        cache.set({"q": 1}, "v")
        assert cache.get({"q": 1}) == "v"  # the generation is known now
        gen = cache.generation
        assert gen is not None
        owner = cluster.master_of(KeyLayout(name).value_key(request_hash({"q": 1}), gen))
        admins = {n.port: n.client() for n in cluster.masters()}
        before = {p: c.info("commandstats") for p, c in admins.items()}
        for _ in range(10):
            assert cache.get({"q": 1}) == "v"
        after = {p: c.info("commandstats") for p, c in admins.items()}
    for port, stats in after.items():
        gets = stats.get("cmdstat_get", {}).get("calls", 0) - before[port].get(
            "cmdstat_get", {}
        ).get("calls", 0)
        assert gets == (10 if port == owner.port else 0), (port, gets)


def test_followers_are_woken_on_the_shard_channel(cluster: Any) -> None:
    """A follower (another worker) is woken by the leader's SPUBLISH, not by its poll
    (poll_interval 30 s), over at most one connection per master."""
    name, policy = ns(), Policy(ttl=60, poll_interval=30.0, wait_timeout=60.0)
    with (
        Cache(cluster.client(), namespace=name, policy=policy) as leader_cache,
        Cache(cluster.client(), namespace=name, policy=policy) as follower_cache,
    ):
        leader_cache.get({"warm": 1})
        follower_cache.get({"warm": 1})
        for k in range(6):
            started = threading.Event()

            def lead(k: int = k, started: threading.Event = started) -> None:
                def compute() -> str:
                    started.set()
                    time.sleep(0.2)
                    return f"v{k}"

                leader_cache.get_or_set({"k": k}, compute)

            t = threading.Thread(target=lead)
            t.start()
            started.wait(5)
            t0 = time.monotonic()
            assert follower_cache.get_or_set({"k": k}, lambda: "other") == f"v{k}"
            assert time.monotonic() - t0 < 10.0  # a poll would take 15-30 s
            t.join()
        shards = follower_cache._binding.shards
        assert follower_cache.stats.followed == 6
        assert shards.subscribed == 6
        assert 1 <= shards.links() <= 3


def test_a_write_is_one_shard_message_not_a_broadcast(cluster: Any) -> None:
    """Each write's ready message is handled by its shard only: on the cluster bus, one
    sharded message per write (to the owning master's replica), and no broadcast."""
    admins = [n.client() for n in cluster.nodes]

    def bus() -> tuple[int, int]:
        infos = [a.cluster("info") for a in admins]
        shard = sum(int(i.get("cluster_stats_messages_publishshard_sent", 0)) for i in infos)
        broadcast = sum(int(i.get("cluster_stats_messages_publish_sent", 0)) for i in infos)
        return shard, broadcast

    writes = 200
    with Cache(cluster.client(), namespace=ns()) as cache:
        cache.get({"warm": 1})
        shard0, broadcast0 = bus()
        for i in range(writes):
            cache.get_or_set({"i": i}, functools.partial(int, i))
        shard1, broadcast1 = bus()
    assert broadcast1 - broadcast0 == 0
    assert shard1 - shard0 == writes  # one replica per master: one bus message per write


@pytest.mark.slow
def test_8_processes_x_4_threads_on_30_keys_one_call_per_key(cluster: Any) -> None:
    """8 processes x 4 threads ask 30 keys spread over the 3 masters, 5 rounds: exactly one
    upstream call per key per round, every caller of a key gets the same value."""
    name, procs_n, threads, keys, rounds = ns(), 8, 4, 30, 5
    control = cluster.client()
    tag = "{" + name + "}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "--url",
                cluster.url,
                "--namespace",
                name,
                "--threads",
                str(threads),
                "--keys",
                str(keys),
                "--rounds",
                str(rounds),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(procs_n)
    ]

    def ready(rnd: int) -> bool:
        return int(control.get(f"ready:{tag}:{rnd}") or 0) == procs_n * threads

    try:
        for rnd in range(rounds):
            wait_until(
                functools.partial(ready, rnd),
                60,
                f"every caller ready for round {rnd}",
            )
            control.rpush(f"go:{tag}:{rnd}", *["go"] * (procs_n * threads))
        reports = []
        for p in procs:
            out, _ = p.communicate(timeout=180)
            assert p.returncode == 0, out
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    assert [r["errors"] for r in reports] == [[]] * procs_n
    for rnd in range(rounds):
        for key in range(keys):
            assert int(control.get(f"count:{name}:{rnd}:{key}") or 0) == 1, (rnd, key)
            values = {v for r in reports for v in r["rounds"][rnd][str(key)]}
            assert len(values) == 1, (rnd, key, values)
    assert all(r["shard_links"] <= 3 for r in reports)


def test_replica_acks_waits_for_a_replica(cluster: Any) -> None:
    """Policy(replica_acks=1): every leader write is followed by a WAIT on its master that a
    healthy replica acknowledges (no shortfall); the values are stored and served."""
    policy = Policy(ttl=60, replica_acks=1, replica_ack_timeout=1.0)
    admins = [n.client() for n in cluster.masters()]

    def waits() -> int:
        return sum(a.info("commandstats").get("cmdstat_wait", {}).get("calls", 0) for a in admins)

    before = waits()
    with Cache(cluster.client(), namespace=ns(), policy=policy) as cache:
        for i in range(12):
            assert cache.get_or_set({"i": i}, functools.partial(int, i)) == i
        assert cache.get({"i": 5}) == 5
        assert cache.stats.replica_ack_shortfalls == 0
    assert waits() - before == 12
