"""The notifier survives what a socket, a server or a message can do to it (hardening item 1).

Each Cache stands for one process.  A dead notifier shows as every later call paying for a
subscription that never comes back, so the tests check that calls stay fast, that the
subscription is (or comes back) up, and that followers are still woken by notifications.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

from fleetcache import AsyncCache, Cache, Policy
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.core.notifier import Notifier
from fleetcache.testing.waiting import wait_until

REQ = {"prompt": "notifier"}
#: Junk a PUBLISH can put on the channel: bad bytes, unknown kinds, bad numbers, huge keys.
GARBAGE = [
    b"r|\xff",
    b"e|\xfe\xfd",
    b"g|notanumber",
    b"g|-5",
    b"g|" + b"9" * 40,
    b"\x00\x01\x02",
    b"",
    b"r|",
    b"|",
    b"zz|whatever",
    b"r|" + b"k" * 10_000,
    b"r|key with spaces",
]


def lock_key(cache: Cache | AsyncCache, request: Any) -> str:
    """The lock key of ``request``'s entry in the cache's current generation."""
    assert cache.generation is not None
    return KeyLayout(cache.namespace).entry(request_hash(request), cache.generation).lock


def follower_is_woken(r: redis.Redis, a: Cache, b: Cache) -> float:
    """Make ``b`` follow ``a``'s leader; return how long b took after the leader wrote."""
    release = threading.Event()
    results: dict[str, Any] = {}
    req = {"prompt": f"wake {time.monotonic()}"}
    ta = threading.Thread(
        target=lambda: results.setdefault("a", a.get_or_set(req, lambda: release.wait(10) and "v")))
    ta.start()
    wait_until(lambda: a.generation is not None and r.exists(lock_key(a, req)), 5,
               "the leader to take the lease")
    tb = threading.Thread(target=lambda: results.setdefault("b", b.get_or_set(req, lambda: "B")))
    tb.start()
    wait_until(lambda: b._notifier.waiting() == 1, 5, "b to wait as a follower")
    released = time.monotonic()
    release.set()
    tb.join(10)
    ta.join(10)
    assert results == {"a": "v", "b": "v"}
    return time.monotonic() - released


def test_malformed_messages_are_ignored_and_counted(r: redis.Redis, redis_node: Any) -> None:
    """(hardening item 1) Junk on the events channel is counted and ignored: the same
    subscription stays up (no reconnect), hits stay fast, followers are still woken."""
    policy = Policy(poll_interval=30.0, wait_timeout=60.0)
    client_b = redis_node.client()
    with Cache(r, namespace="junk", policy=policy) as a, \
            Cache(client_b, namespace="junk", policy=policy) as b:
        assert a.set(REQ, "v")
        assert b.get(REQ) == "v"
        wait_until(lambda: b.subscribed, 5, "b's subscription")
        channel = KeyLayout("junk").channel
        for junk in GARBAGE:
            r.publish(channel, junk)
        wait_until(lambda: b.stats.bad_messages == len(GARBAGE), 5, "every junk message")
        assert b.subscribed
        assert b._notifier.reconnects == 0
        for _ in range(20):
            start = time.monotonic()
            assert b.get(REQ) == "v"
            assert time.monotonic() - start < 0.25
        assert follower_is_woken(r, a, b) < 5.0  # the poll would take 15-30 s
    client_b.close()


def test_async_malformed_messages_are_ignored_and_counted(redis_node: Any) -> None:
    """(hardening item 1) The asyncio notifier ignores and counts the same junk and keeps
    its subscription."""

    async def body() -> None:
        r = redis_node.async_client()
        async with AsyncCache(redis_node.async_client(), namespace="ajunk") as cache:
            assert await cache.set(REQ, "v")
            for _ in range(500):
                if cache.subscribed:
                    break
                await asyncio.sleep(0.01)
            assert cache.subscribed
            for junk in GARBAGE:
                await r.publish(KeyLayout("ajunk").channel, junk)
            for _ in range(500):
                if cache.stats.bad_messages == len(GARBAGE):
                    break
                await asyncio.sleep(0.01)
            assert cache.stats.bad_messages == len(GARBAGE)
            assert cache.subscribed
            assert cache._notifier.reconnects == 0
            assert await cache.get(REQ) == "v"
        await r.aclose()

    asyncio.run(body())


def test_a_write_pause_during_the_first_subscription_costs_hits_nothing(
    r: redis.Redis, redis_node: Any
) -> None:
    """(hardening item 1) Redis pauses writes (CLIENT PAUSE WRITE) for 2 s while a new
    process subscribes: its connect script times out, yet every hit meanwhile answers at
    once from the generation key, and the subscription comes up once the pause ends."""
    with Cache(r, namespace="pause") as warm:
        assert warm.set(REQ, "v")
    client = redis_node.client()
    policy = Policy(redis_timeout=0.5)
    r.client_pause(2000, all=False)
    pause_ends = time.monotonic() + 2.0
    with Cache(client, namespace="pause", policy=policy) as cache:
        hits = 0
        while time.monotonic() < pause_ends - 0.2:
            start = time.monotonic()
            assert cache.get(REQ) == "v"
            assert time.monotonic() - start < 0.25, "a hit waited for the subscription"
            hits += 1
        assert hits >= 5
        assert not cache.subscribed  # the connect script is still paused
        wait_until(lambda: cache.subscribed, 10, "the subscription after the pause")
        assert cache.stats.fail_open == 0
    client.close()


def test_connect_script_refused_on_a_replica(make_nodes: Any) -> None:
    """(hardening item 1) On a read-only replica the connect script's write is refused
    (READONLY): the notifier reads the generation instead and subscribes; hits work."""
    primary, replica = make_nodes(2)
    pr = primary.client()
    with Cache(pr, namespace="ro") as writer:
        assert writer.set(REQ, "v")
    rr = replica.client()
    rr.replicaof(primary.host, primary.port)
    wait_until(lambda: rr.info("replication").get("master_link_status") == "up"
               and rr.exists("fc:ro:gen"), 10, "the replica to sync")
    with Cache(rr, namespace="ro") as cache:
        assert cache.get(REQ) == "v"
        wait_until(lambda: cache.subscribed, 5, "the subscription on the replica")
        for _ in range(10):
            start = time.monotonic()
            assert cache.get(REQ) == "v"
            assert time.monotonic() - start < 0.25
        assert cache.stats.fail_open == 0
    rr.replicaof("NO", "ONE")
    pr.close()
    rr.close()


def test_a_failing_connect_callback_ends_a_session_not_the_thread(redis_node: Any) -> None:
    """(hardening item 1) on_connect raising (any exception) ends that session only: the
    thread retries with back-off and subscribes once the callback succeeds."""
    attempts: list[int] = []

    def on_connect() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("out of range, or anything else")

    client = redis_node.client()
    notifier = Notifier(client, "fc:cb:events", on_connect, lambda gen: None, backoff=0.01)
    try:
        notifier.ensure_running()
        wait_until(lambda: notifier.healthy, 10, "the third attempt to subscribe")
        assert len(attempts) == 3
    finally:
        notifier.stop()
        client.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_notifier_thread_is_replaced(redis_node: Any) -> None:
    """(hardening item 1) A notifier whose thread ended anyway (here: a BaseException in a
    callback) is started again by the next ensure_running(), as every call does."""
    armed = threading.Event()
    armed.set()

    def on_connect() -> None:
        if armed.is_set():
            armed.clear()
            raise SystemExit  # not an Exception: ends the thread

    client = redis_node.client()
    notifier = Notifier(client, "fc:dead:events", on_connect, lambda gen: None)
    try:
        notifier.ensure_running()
        first = notifier._thread
        assert first is not None
        first.join(10)
        assert not first.is_alive()
        assert not notifier.healthy
        assert notifier.wait_healthy(5.0)
        assert notifier._thread is not first
    finally:
        notifier.stop()
        client.close()
