"""Redis Cluster under faults, mid-stampede (real 6-node clusters): a master SIGKILLed while
its replica is promoted, and a slot migrated (MIGRATING/IMPORTING, MIGRATE, SETSLOT NODE)
while followers wait on keys in it.  Callers are 4 caches (each with its own connections,
subscription and flights, as 4 processes would have) x 4 threads, released by a barrier."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.crc import key_slot

from fleetcache import Cache, Policy
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.testing.waiting import wait_until

WORKERS, THREADS = 4, 4
POLICY = Policy(
    ttl=300,
    lock_ttl=3.0,
    wait_timeout=10.0,
    redis_timeout=0.5,
    retry_backoff=0.1,
    retry_backoff_max=0.5,
)


class Upstream:
    """A compute that counts its calls and can run a hook once it started."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.started = threading.Event()
        self.guard = threading.Lock()

    def __call__(self, tag: str) -> str:
        with self.guard:
            self.calls += 1
            n = self.calls
        self.started.set()
        time.sleep(self.seconds)
        return f"{tag}:{n}"


def stampede(
    caches: list[Cache],
    request: Any,
    upstream: Upstream,
    tag: str,
    during: Callable[[], None] | None = None,
) -> list[tuple[str, float]]:
    """Every thread of every cache asks ``request`` at once; ``during`` runs once the first
    compute started.  Returns (value or error, seconds) per caller."""
    barrier = threading.Barrier(len(caches) * THREADS)
    out: list[tuple[str, float]] = []
    guard = threading.Lock()

    def call(cache: Cache) -> None:
        barrier.wait()
        start = time.monotonic()
        try:
            value = str(cache.get_or_set(request, lambda: upstream(tag)))
        except Exception as exc:
            value = f"error {type(exc).__name__}: {exc}"
        with guard:
            out.append((value, time.monotonic() - start))

    threads = [threading.Thread(target=call, args=(c,)) for c in caches for _ in range(THREADS)]
    for t in threads:
        t.start()
    if during is not None:
        assert upstream.started.wait(10)
        during()
    for t in threads:
        t.join(60)
    assert len(out) == len(threads)
    return out


@pytest.fixture
def caches(fresh_cluster: Any) -> Iterator[list[Cache]]:
    """WORKERS caches on one namespace of the test's own cluster, warmed up and closed."""
    name = f"ft-{uuid.uuid4().hex[:8]}"
    made = [Cache(fresh_cluster.client(), namespace=name, policy=POLICY) for _ in range(WORKERS)]
    for c in made:
        c.get({"warm": 1})
    try:
        yield made
    finally:
        for c in made:
            c.close()


def owner_key(cache: Cache, request: Any) -> str:
    """The entry key of ``request`` in the cache's current generation."""
    gen = cache.generation
    assert gen is not None
    return KeyLayout(cache.namespace).value_key(request_hash(request), gen)


def wait_all_reach_redis(caches: list[Cache], request: Any) -> None:
    """Until every cache writes to the entry's slot again (breakers closed, map updated)."""
    wait_until(
        lambda: all(c.set(request, "probe") for c in caches),
        30,
        "every cache to reach the promoted master",
    )
    caches[0].delete(request)


@pytest.mark.slow
def test_master_sigkill_mid_stampede_fails_open_then_single_flight(
    fresh_cluster: Any, caches: list[Cache]
) -> None:
    """SIGKILL of the entry's master while its leader computes: every caller returns a
    value (failing open) within the bound, none after wait_timeout; once the replica is
    promoted, a new stampede on that master's slot makes exactly one upstream call."""
    before = {"round": "before", "k": 1}
    master = fresh_cluster.master_of(owner_key(caches[0], before))
    upstream = Upstream(1.0)
    killed: list[Any] = []
    results = stampede(
        caches, before, upstream, "before", during=lambda: killed.append(master.kill())
    )
    assert not [v for v, _ in results if v.startswith("error")]
    assert max(s for _, s in results) < POLICY.wait_timeout
    promoted = fresh_cluster.failover_wait(master)
    assert promoted.port != master.port
    after = {"round": "after", "k": 1}
    for n in range(2, 40):  # a request whose entry the promoted master serves
        if fresh_cluster.master_of(owner_key(caches[0], after)).port == promoted.port:
            break
        after = {"round": "after", "k": n}
    assert fresh_cluster.master_of(owner_key(caches[0], after)).port == promoted.port
    wait_all_reach_redis(caches, after)
    again = Upstream(0.5)
    results = stampede(caches, after, again, "after")
    assert again.calls == 1
    assert {v for v, _ in results} == {"after:1"}


@pytest.mark.slow
def test_slot_migration_mid_stampede_one_call_no_error(
    fresh_cluster: Any, caches: list[Cache]
) -> None:
    """The entry's slot migrates to another master while its leader computes and 15
    followers wait: no error reaches a caller, exactly one upstream call, every caller gets
    its value; the entry is then served by the new owner."""
    request = {"round": "migrate"}
    key = owner_key(caches[0], request)
    slot = key_slot(key.encode())
    source = fresh_cluster.master_of(key)
    target = next(m for m in fresh_cluster.masters() if m.port != source.port)
    src, dst = source.client(), target.client()
    src_id, dst_id = src.cluster("myid"), dst.cluster("myid")
    src_id = src_id.decode() if isinstance(src_id, bytes) else src_id
    dst_id = dst_id.decode() if isinstance(dst_id, bytes) else dst_id

    def migrate() -> None:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        for node in fresh_cluster.masters():
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    upstream = Upstream(1.5)
    results = stampede(caches, request, upstream, "migrate", during=migrate)
    assert [v for v, _ in results if v.startswith("error")] == []
    assert upstream.calls == 1
    assert {v for v, _ in results} == {"migrate:1"}
    wait_until(
        lambda: fresh_cluster.master_of(key).port == target.port,
        10,
        "the cluster to agree on the slot's new owner",
    )
    assert dst.get(key) is not None  # the entry lives on the new owner
    assert caches[1].get(request) == "migrate:1"
