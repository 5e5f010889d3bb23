"""A reachable Redis that refuses commands is not an outage (hardening items 3 and 4).

OOM under ``maxmemory`` + ``noeviction``, an ACL user without write (or channel)
permission, a read-only replica: each refuses some commands while it still serves others.
The breaker is for an unreachable Redis: a refused command must not send the calls of
cached, readable keys upstream, and must not stop the cache from caching what it can.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from fleetcache import Cache, CommandRefused, Policy
from fleetcache.core.keys import KeyLayout, request_hash
from fleetcache.testing.waiting import wait_until

CACHED = {"prompt": "cached before the refusals"}
NEW = {"prompt": "new during the refusals"}


def oom(node: Any, admin: redis.Redis) -> tuple[redis.Redis, Callable[[], object]]:
    """maxmemory 1 byte with noeviction: every write that allocates is refused (OOM)."""
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    return node.client(), lambda: admin.config_set("maxmemory", 0)


def read_only_user(node: Any, admin: redis.Redis) -> tuple[redis.Redis, Callable[[], object]]:
    """An ACL user who may read every key and use the channels, but write nothing."""
    admin.acl_setuser("reader", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                      commands=["+@read", "+@connection", "+@pubsub", "+evalsha", "+eval",
                                "+script", "+client"])
    return node.client(username="reader", password="pw"), lambda: None


def replica(node: Any, admin: redis.Redis,
            primary: Any) -> tuple[redis.Redis, Callable[[], object]]:
    """The node becomes a read-only replica of ``primary`` (READONLY on every write)."""
    admin.replicaof(primary.host, primary.port)
    wait_until(lambda: admin.info("replication").get("master_link_status") == "up"
               and admin.exists("fc:refused:gen"), 10, "the replica to sync")
    return node.client(), lambda: admin.replicaof("NO", "ONE")


@pytest.fixture(params=["oom", "noperm", "readonly"])
def refusing(request: pytest.FixtureRequest, make_nodes: Any) -> Iterator[redis.Redis]:
    """A client to a node where CACHED is stored and every write is now refused."""
    node, primary = make_nodes(2)
    admin = node.client()
    source = primary.client() if request.param == "readonly" else admin
    with Cache(source, namespace="refused") as warm:
        assert warm.set(CACHED, "cached")
    if request.param == "oom":
        client, undo = oom(node, admin)
    elif request.param == "noperm":
        client, undo = read_only_user(node, admin)
    else:
        client, undo = replica(node, admin, primary)
    try:
        yield client
    finally:
        undo()
        client.close()
        admin.close()
        source.close()


def test_a_refused_write_does_not_open_the_breaker(refusing: redis.Redis) -> None:
    """(hardening item 3) A write refused by a healthy Redis (OOM, NOPERM, READONLY) costs
    that one call its caching only: the computed value is returned, and the next 15 calls
    of a cached, readable key are hits — none goes upstream, nothing counts as an outage."""
    upstream: list[str] = []

    def compute(tag: str) -> Callable[[], str]:
        def call() -> str:
            upstream.append(tag)
            return tag
        return call

    with Cache(refusing, namespace="refused") as cache:
        assert cache.get_or_set(NEW, compute("new")) == "new"
        assert upstream == ["new"]
        assert cache.stats.refused >= 1
        for _ in range(15):
            assert cache.get_or_set(CACHED, compute("again")) == "cached"
        assert upstream == ["new"]
        assert cache.stats.hits == 15
        assert cache.stats.backend_errors == 0
        assert cache.stats.fail_open == 0
        assert cache.set(NEW, "x") is False  # refused, reported, no exception
        assert cache.get(CACHED) == "cached"


def test_refused_commands_raise_command_refused_when_failing_closed(
    refusing: redis.Redis,
) -> None:
    """(hardening item 3) With fail_open=False a refused write raises CommandRefused (a
    BackendError) naming Redis's reply, while reads of cached keys still hit."""
    with Cache(refusing, namespace="refused", policy=Policy(fail_open=False)) as cache:
        assert cache.get(CACHED) == "cached"
        with pytest.raises(CommandRefused) as info:
            cache.set(NEW, "x")
        assert info.value.reply in ("OOM", "NOPERM", "READONLY", "ERR")
        assert cache.get_or_set(CACHED, lambda: "upstream") == "cached"


def test_no_channel_permission_still_caches(redis_node: Any, r: redis.Redis,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """(hardening item 4) A Redis 7 ACL user without channel permission (the default
    ``resetchannels``): entries are still stored (three calls, one upstream call), followers
    in another process are served by their poll, and the log names the missing
    permission."""
    r.acl_setuser("nochan", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"],
                  reset_channels=True)
    client = redis_node.client(username="nochan", password="pw")
    client_b = redis_node.client(username="nochan", password="pw")
    upstream: list[str] = []

    def compute() -> str:
        upstream.append("x")
        return "value"

    policy = Policy(poll_interval=0.1, wait_timeout=10)
    caplog.set_level(logging.WARNING, logger="fleetcache")
    try:
        with Cache(client, namespace="nochan", policy=policy) as a, \
                Cache(client_b, namespace="nochan", policy=policy) as b:
            for _ in range(3):
                assert a.get_or_set({"prompt": 1}, compute) == "value"
            assert upstream == ["x"]
            assert a.stats.notify_refused == 1
            assert not a.subscribed

            release = threading.Event()
            results: dict[str, Any] = {}
            req = {"prompt": 2}
            ta = threading.Thread(target=lambda: results.setdefault(
                "a", a.get_or_set(req, lambda: release.wait(10) and compute())))
            ta.start()
            lock = KeyLayout("nochan").entry(request_hash(req), a.generation or 0).lock
            wait_until(lambda: r.exists(lock), 5, "the leader to take the lease")
            tb = threading.Thread(target=lambda: results.setdefault(
                "b", b.get_or_set(req, compute)))
            tb.start()
            wait_until(lambda: b._notifier.waiting() == 1, 5, "b to follow")
            release.set()
            ta.join(10)
            tb.join(10)
            assert results == {"a": "value", "b": "value"}
            assert upstream == ["x", "x"]
            assert b.stats.followed == 1
        text = caplog.text
        assert "NOPERM" in text or "PUBLISH" in text
        assert "ACL SETUSER" in text
    finally:
        client.close()
        client_b.close()
