"""A process forked while the cache is busy (gunicorn, multiprocessing) starts clean
(hardening item 5).

The child inherits the parent's memory but none of its other threads: their in-process
flights never finish and the locks they held stay locked, unless the cache resets them.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import redis

from fleetcache import Cache, Policy, WaitTimeout
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.testing.waiting import wait_until

REQ = {"prompt": "fork"}
FORK = multiprocessing.get_context("fork")


def child_call(cache: Cache, conn: Connection, request: Any, marker: str, url: str) -> None:
    """In the child: note that it is about to call, call, and send back what happened."""
    try:
        redis.Redis.from_url(url).set(marker, "1", px=60_000)
        start = time.monotonic()
        value = cache.get_or_set(request, lambda: "from the child")
        conn.send(("value", value, time.monotonic() - start))
    except WaitTimeout as exc:
        conn.send(("timeout", str(exc), 0.0))
    except BaseException as exc:
        conn.send(("error", repr(exc), 0.0))
    finally:
        conn.close()


def lead(cache: Cache, req: Any, release: threading.Event) -> None:
    """The parent's leader: computes until ``release`` is set."""
    cache.get_or_set(req, lambda: release.wait(10) and "from the parent")


def leading(r: redis.Redis, cache: Cache, req: Any) -> bool:
    """True once ``cache`` holds the lease of ``req``'s entry."""
    gen = cache.generation
    return gen is not None and bool(r.exists(KeyLayout("fork").entry(request_hash(req), gen).lock))


def test_a_child_forked_during_a_miss_follows_the_parents_leader(
    r: redis.Redis, redis_node: Any
) -> None:
    """(hardening item 5) A child forked while the parent leads a miss does not wait on
    the inherited in-process flight: it follows the parent's leader through Redis and gets
    its value as soon as it is written (3 trials)."""
    policy = Policy(wait_timeout=5.0, poll_interval=2.0)
    with Cache(r, namespace="fork", policy=policy) as cache:
        for trial in range(3):
            req = {**REQ, "trial": trial}
            release = threading.Event()
            leader = threading.Thread(target=lead, args=(cache, req, release))
            leader.start()
            wait_until(lambda: leading(r, cache, req), 5, "the leader to lead")  # noqa: B023
            marker = f"t:fork:{trial}"
            ours, theirs = FORK.Pipe(duplex=False)
            child = FORK.Process(target=child_call,
                                 args=(cache, theirs, req, marker, redis_node.url))
            child.start()
            theirs.close()
            wait_until(lambda: r.exists(marker), 10, "the child to call")  # noqa: B023
            release.set()
            leader.join(10)
            assert ours.poll(8), "the child did not answer"
            kind, value, took = ours.recv()
            child.join(10)
            assert (kind, value) == ("value", "from the parent")
            assert took < 3.0


def hold_then_fork(lock: Any, cache: Cache, url: str) -> tuple[str, Any]:
    """Hold ``lock`` in another thread while forking; return what the child's call did."""
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            done.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(5)
    ours, theirs = FORK.Pipe(duplex=False)
    try:
        child = FORK.Process(target=child_call,
                             args=(cache, theirs, {"prompt": "locks"}, "t:fork:locks", url))
        child.start()
    finally:
        done.set()
        t.join(5)
    theirs.close()
    answered = ours.poll(10)
    if not answered:
        child.kill()
        child.join(5)
        return "deadlocked", None
    kind, value, _ = ours.recv()
    child.join(10)
    return kind, value


def test_locks_held_at_fork_time_do_not_deadlock_the_child(
    r: redis.Redis, redis_node: Any
) -> None:
    """(hardening item 5) Locks that another thread held at fork time (stats, breaker,
    generation, the binding's) are fresh in the child: its first call completes."""
    with Cache(r, namespace="forklocks") as cache:
        assert cache.get_or_set({"warm": 1}, lambda: "w") == "w"
        for lock in (cache.stats._guard, cache._breaker._guard, cache._gen.known._guard,
                     cache._bind_guard):
            assert hold_then_fork(lock, cache, redis_node.url) == ("value", "from the child")
            r.delete(*r.keys("fc:forklocks:*:{*}*"))
