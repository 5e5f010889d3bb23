"""What a process believes of the events channel and of Redis (hardening item 11).

Anyone allowed to PUBLISH on a namespace's channel can send anything: a message must never
be taken for data.  And what a failed leader leaves in Redis must not leak secrets.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import redis

from fleetcache import MISS, Cache, LeaderFailed, Policy
from fleetcache.core import envelope, events
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.testing.waiting import wait_until

REQ = {"prompt": "trust"}
SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


def lock_key(cache: Cache, request: Any) -> str:
    """The lock key of ``request``'s entry in the cache's current generation."""
    assert cache.generation is not None
    return KeyLayout(cache.namespace).entry(request_hash(request), cache.generation).lock


def mget_calls(r: redis.Redis) -> int:
    """How many MGETs (followers' looks) the server executed since CONFIG RESETSTAT."""
    stats: dict[str, Any] = r.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


def test_a_forged_ready_message_never_reaches_a_follower(r: redis.Redis, redis_node: Any) -> None:
    """(hardening item 11) A ready message carrying a forged entry wakes the follower, but
    the follower reads Redis, finds nothing yet, and returns the real leader's value."""
    release = threading.Event()
    results: dict[str, Any] = {}
    client_b = redis_node.client()
    policy = Policy(poll_interval=30.0, wait_timeout=60.0)
    r.config_resetstat()
    with Cache(r, namespace="forge", policy=policy) as a, \
            Cache(client_b, namespace="forge", policy=policy) as b:
        ta = threading.Thread(target=lambda: results.setdefault(
            "a", a.get_or_set(REQ, lambda: release.wait(10) and "real")))
        ta.start()
        wait_until(lambda: a.generation is not None and r.exists(lock_key(a, REQ)), 5,
                   "the leader to take the lease")
        tb = threading.Thread(target=lambda: results.setdefault(
            "b", b.get_or_set(REQ, lambda: "B")))
        tb.start()
        wait_until(lambda: b._notifier.waiting() == 1, 5, "b to wait as a follower")
        # its first look and its early re-try (a split-vote guard); then a 15-30 s poll
        wait_until(lambda: mget_calls(r) == 2, 5, "the follower's two looks")
        key = KeyLayout("forge").value_key(request_hash(REQ), a.generation or 0)
        now = time.time()
        forged = envelope.encode(envelope.Envelope(now, now + 60, 0.0, 10**18, "FORGED"))
        r.publish(KeyLayout("forge").channel, events.ready(key) + b"|" + forged)
        r.publish(KeyLayout("forge").channel, events.ready(key))
        wait_until(lambda: mget_calls(r) > 2, 5, "the woken follower to read Redis")
        assert tb.is_alive()
        release.set()
        tb.join(10)
        ta.join(10)
        assert results == {"a": "real", "b": "real"}
    client_b.close()


def test_a_forged_generation_is_not_adopted(r: redis.Redis, redis_node: Any) -> None:
    """(hardening item 11) ``g|<huge>`` on the channel makes a process read the generation
    key; Redis disagrees, so nothing changes, and invalidate() still works afterwards."""
    with Cache(r, namespace="fgen") as cache:
        assert cache.set(REQ, "v")
        wait_until(lambda: cache.subscribed, 5, "the subscription")
        gen = cache.generation
        assert gen is not None
        channel = KeyLayout("fgen").channel
        r.publish(channel, events.generation(2**62))
        r.publish(channel, b"junk")  # processed after the forged one: a marker
        wait_until(lambda: cache.stats.bad_messages == 1, 5, "the marker")
        assert cache.generation == gen
        assert cache.get(REQ) == "v"
        new = cache.invalidate()
        assert gen < new < 2**62
        assert cache.get(REQ) is MISS


def failing_leader(r: redis.Redis, client_b: redis.Redis, policy: Policy,
                   message: str) -> tuple[LeaderFailed, bytes | None]:
    """A leader fails with ``message`` while a follower waits; return what the follower got
    and the failure record as stored in Redis."""
    release = threading.Event()
    outcome: dict[str, Any] = {}

    def failing() -> Any:
        release.wait(10)
        raise RuntimeError(message)

    with Cache(r, namespace="leak", policy=policy) as a, \
            Cache(client_b, namespace="leak", policy=policy) as b:

        def run(name: str, cache: Cache, fn: Any) -> None:
            try:
                outcome[name] = cache.get_or_set(REQ, fn)
            except Exception as exc:
                outcome[name] = exc

        ta = threading.Thread(target=run, args=("a", a, failing))
        ta.start()
        wait_until(lambda: a.generation is not None and r.exists(lock_key(a, REQ)), 5,
                   "the leader to take the lease")
        tb = threading.Thread(target=run, args=("b", b, lambda: "B"))
        tb.start()
        wait_until(lambda: b._notifier.waiting() == 1, 5, "b to wait as a follower")
        release.set()
        ta.join(10)
        tb.join(10)
        record = r.get(KeyLayout("leak").entry(request_hash(REQ), a.generation or 0).error)
        r.flushall()
    assert isinstance(outcome["a"], RuntimeError)
    assert isinstance(outcome["b"], LeaderFailed)
    return outcome["b"], record  # type: ignore[return-value]  # bytes: never decoded


def test_leader_messages_stay_private_by_default(r: redis.Redis, redis_node: Any) -> None:
    """(hardening item 11) By default a failed leader stores and shares only its
    exception's type: the message (a URL with an API key here) is neither in Redis nor in
    the follower's LeaderFailed."""
    client_b = redis_node.client()
    msg = f"GET https://api.example.com/v1?key={SECRET} failed for alice@example.com"
    failed, record = failing_leader(r, client_b, Policy(), msg)
    assert failed.exc_type == "builtins.RuntimeError"
    assert failed.message == ""
    assert record is not None
    assert orjson.loads(record) == {"t": "builtins.RuntimeError"}
    assert SECRET not in str(failed)
    client_b.close()


def test_shared_leader_messages_are_redacted(r: redis.Redis, redis_node: Any) -> None:
    """(hardening item 11) share_error_message=True shares the message with URL query
    strings and key-like strings masked; a callable hook replaces the redaction."""
    client_b = redis_node.client()
    msg = f"429 from https://api.example.com/v1/chat?api_key={SECRET}: key {SECRET} throttled"
    failed, record = failing_leader(r, client_b, Policy(share_error_message=True), msg)
    assert failed.message.startswith("429 from https://api.example.com/v1/chat?<redacted>")
    assert "throttled" in failed.message
    assert SECRET not in failed.message
    assert record is not None
    assert SECRET.encode() not in record

    hook = Policy(share_error_message=lambda exc: f"upstream said {len(str(exc))} chars")
    failed, record = failing_leader(r, client_b, hook, msg)
    assert failed.message == f"upstream said {len(msg)} chars"
    client_b.close()
