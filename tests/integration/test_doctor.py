"""``python -m fleetcache doctor`` against real Redis nodes: healthy, paused, unreachable,
short of permissions, and the nodes of a Redlock (healthy, a minority paused, a majority
paused)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from fleetcache.__main__ import main
from fleetcache.cli.doctor_checks import check_memory
from fleetcache.cli.doctor_nodes import Context, Node, connect_node, shard_tag
from fleetcache.testing import RedisNode

#: The stampede, small: 2 processes x 2 threads.
SMALL = ["--processes", "2", "--threads", "2"]
SERVER_CHECKS = ("connect", "version", "scripts", "pubsub", "acl", "memory")
FLEET_CHECKS = ("fencing", "stampede", "hand-off", "cleanup")


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], float]:
    """Run ``doctor --json``: (exit status, the parsed report, seconds it took)."""
    start = time.monotonic()
    status = main(["doctor", *argv, "--json"])
    took = time.monotonic() - start
    return status, json.loads(capsys.readouterr().out), took


def lines(report: dict[str, Any], check: str, node: str | None = None) -> list[dict[str, Any]]:
    """The report's lines of ``check`` (on the node whose name starts with ``node``)."""
    return [
        line for line in report["checks"]
        if line["check"] == check and (node is None or line["node"].startswith(node))
    ]


def statuses(report: dict[str, Any]) -> dict[str, set[str]]:
    """check -> the statuses its lines got."""
    out: dict[str, set[str]] = {}
    for line in report["checks"]:
        out.setdefault(line["check"], set()).add(line["status"])
    return out


def address(node: RedisNode) -> str:
    """``host:port`` of a node, as the report names it."""
    return f"{node.host}:{node.port}"


def scratch_keys(node: RedisNode) -> list[bytes]:
    """Every key the doctor could have left on ``node``."""
    client = node.client()
    try:
        return list(client.scan_iter(match="fc:doctor-*"))
    finally:
        client.close()


@contextmanager
def paused(*nodes: RedisNode) -> Iterator[None]:
    """SIGSTOP ``nodes`` for the block; SIGCONT them afterwards, also when it fails."""
    try:
        for node in nodes:
            node.pause()
        yield
    finally:
        for node in nodes:
            if node.paused:
                node.resume()


def dead_url() -> str:
    """A URL on a loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


# --------------------------------------------------------------------------- standalone


def test_healthy_node_passes_and_leaves_nothing(
    fresh_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a healthy node every check is OK or WARN, the stampede made 1 upstream call for
    4 callers, the exit status is 0 and no scratch key is left behind."""
    status, report, _ = doctor(capsys, "--redis", fresh_node.url, *SMALL)
    assert status == 0, report
    assert report["mode"] == "standalone"
    assert report["verdict"] in ("OK", "WARN")
    found = statuses(report)
    for check in (*SERVER_CHECKS, *FLEET_CHECKS):
        assert check in found, (check, report)
        assert found[check] <= {"OK", "WARN"}, (check, report)
    for check in ("connect", "scripts", "pubsub", "acl", "fencing", "stampede", "cleanup"):
        assert found[check] == {"OK"}, (check, report)
    (stampede,) = lines(report, "stampede")
    assert stampede["data"]["upstream_calls"] == 1
    assert stampede["data"]["callers"] == 4
    assert stampede["data"]["equal_values"]
    assert "fence" in lines(report, "fencing")[0]["detail"]
    assert lines(report, "memory")[0]["status"] == "WARN"  # redis-server's noeviction
    assert "deleted" in lines(report, "cleanup")[0]["detail"]
    assert scratch_keys(fresh_node) == []


def test_table_and_exit_status_when_paused(
    fresh_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """A paused (SIGSTOP) node: a FAIL connect line naming it within a few seconds, the
    verdict FAIL, exit status 1, and no traceback."""
    with paused(fresh_node):
        start = time.monotonic()
        status = main(["doctor", "--redis", fresh_node.url])
        took = time.monotonic() - start
    captured = capsys.readouterr()
    assert status == 1
    assert took < 10
    rows = [line.split(None, 3) for line in captured.out.splitlines()]
    assert ["status", "check", "node", "detail"] in rows
    fail = next(row for row in rows if row[:2] == ["FAIL", "connect"])
    assert fail[2] == address(fresh_node)
    assert "no reply within 1 s" in fail[3]
    assert captured.out.rstrip().splitlines()[-1].startswith("verdict: FAIL")
    assert "Traceback" not in captured.out + captured.err


def test_unreachable_node_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: FAIL connect ("connection refused"), exit status 1, at once."""
    url = dead_url()
    status, report, took = doctor(capsys, "--redis", url)
    assert status == 1
    assert not report["ok"]
    assert report["verdict"] == "FAIL"
    assert [(c["status"], c["check"]) for c in report["checks"]] == [("FAIL", "connect")]
    assert "connection refused" in report["checks"][0]["detail"]
    assert took < 5


def test_user_without_channel_permission_is_told_what_to_grant(
    fresh_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ACL user without channel permission (Redis 7's resetchannels): the acl line FAILs
    naming the channels and the grant (&fc:*), pub/sub FAILs, the exit status is 1, and the
    scratch keys are still deleted."""
    admin = fresh_node.client()
    try:
        admin.execute_command("ACL", "SETUSER", "u", "on", ">pw", "~*", "+@all", "resetchannels")
    finally:
        admin.close()
    url = f"redis://u:pw@{fresh_node.host}:{fresh_node.port}/0"
    status, report, _ = doctor(capsys, "--redis", url, "--processes", "1", "--threads", "2")
    assert status == 1
    (acl,) = lines(report, "acl")
    assert acl["status"] == "FAIL"
    assert "channels fc:*" in acl["detail"]
    assert "ACL SETUSER u &fc:*" in acl["detail"]
    assert "PUBLISH, SUBSCRIBE" in acl["detail"]
    assert lines(report, "pubsub")[0]["status"] == "FAIL"
    assert "pw" not in json.dumps(report)  # the report never shows the password
    # The cache still works without its channel: followers poll.
    assert lines(report, "stampede")[0]["status"] == "OK"
    assert scratch_keys(fresh_node) == []


#: The README's least-privilege ACL for the cache's user (standalone).
CACHE_ACL = (
    "resetkeys ~fc:* resetchannels &fc:* -@all +get +set +mget +del +unlink +incr +incrby "
    "+pexpire +pttl +time +ping +eval +evalsha +script|load +publish +subscribe +scan"
)


def test_least_privilege_user_passes(
    fresh_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user granted exactly the README's ACL line passes every check the cache needs
    (only the doctor's own INFO is refused: memory is a WARN), and Redis logged no
    refusal of a command the cache sent."""
    admin = fresh_node.client()
    try:
        admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", *CACHE_ACL.split())
        url = f"redis://app:pw@{fresh_node.host}:{fresh_node.port}/0"
        status, report, _ = doctor(capsys, "--redis", url, *SMALL)
        refused = {entry[b"object"] for entry in admin.execute_command("ACL", "LOG")}
    finally:
        admin.close()
    assert status == 0, report
    for check in ("acl", "scripts", "pubsub", "fencing", "stampede", "hand-off", "cleanup"):
        assert [line["status"] for line in lines(report, check)] == ["OK"], (check, report)
    assert "INFO refused" in lines(report, "memory")[0]["detail"]
    assert refused <= {b"info", b"acl|whoami"}  # the doctor's own, with fallbacks
    assert scratch_keys(fresh_node) == []


def test_memory_policy_advice(make_nodes: Callable[..., list[RedisNode]]) -> None:
    """noeviction is a WARN that names allkeys-lru; allkeys-lru and volatile-lru are OK."""
    (node,) = make_nodes(1)
    client = node.client()
    checked = Node(node.host, node.port, node.url, "standalone", tag=shard_tag(()))
    ctx = Context("doctor-memory", 1.0)
    try:
        for policy, expected in (("noeviction", "WARN"), ("allkeys-lru", "OK"),
                                 ("volatile-lru", "OK")):
            client.config_set("maxmemory-policy", policy)
            assert connect_node(checked, 1.0).status == "OK"
            (line,) = check_memory(checked, ctx)
            assert (line.status, policy in line.detail) == (expected, True)
            if expected == "WARN":
                assert "allkeys-lru" in line.detail
                assert "OOM" in line.detail
    finally:
        client.close()
        if checked.client is not None:
            checked.client.close()


def test_needs_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --redis and --redlock doctor exits 2 with a usage line, before any I/O."""
    assert main(["doctor"]) == 2
    assert "--redis" in capsys.readouterr().err


# --------------------------------------------------------------------------- Redlock


@pytest.fixture
def five(make_nodes: Callable[..., list[RedisNode]]) -> list[RedisNode]:
    """Five independent masters."""
    return make_nodes(5)


def redlock_arg(nodes: list[RedisNode]) -> str:
    """``--redlock``'s value for ``nodes``."""
    return ",".join(n.url for n in nodes)


def test_redlock_nodes_pass(five: list[RedisNode], capsys: pytest.CaptureFixture[str]) -> None:
    """Five healthy Redlock nodes: quorum 5/5 granted, clocks within 50 ms, version and
    scripts OK on each, exit status 0, nothing left behind."""
    status, report, _ = doctor(capsys, "--redlock", redlock_arg(five))
    assert status == 0, report
    (quorum,) = lines(report, "quorum")
    assert quorum["status"] == "OK"
    assert quorum["data"]["quorum"] == 3
    assert sorted(quorum["data"]["granted"]) == sorted(address(n) for n in five)
    clocks = lines(report, "clock")
    assert len(clocks) == 6  # one per node and the spread
    assert {c["status"] for c in clocks} == {"OK"}
    for node in five:
        for check in ("connect", "version", "scripts"):
            assert [c["status"] for c in lines(report, check, address(node))] == ["OK"]
        assert scratch_keys(node) == []


def test_one_paused_redlock_node_of_five_is_a_warning(
    five: list[RedisNode], capsys: pytest.CaptureFixture[str]
) -> None:
    """One of five paused: its line FAILs (tolerated), the quorum round still gets its lock
    from 4/5 (WARN), so the verdict is WARN and the exit status 0."""
    with paused(five[2]):
        status, report, took = doctor(capsys, "--redlock", redlock_arg(five))
    assert status == 0, report
    assert report["verdict"] == "WARN"
    assert took < 10
    (fail,) = [c for c in report["checks"] if c["status"] == "FAIL"]
    assert (fail["check"], fail["node"].split()[0]) == ("connect", address(five[2]))
    assert fail["tolerated"]
    assert "no reply within 1 s" in fail["detail"]
    (quorum,) = lines(report, "quorum")
    assert quorum["status"] == "WARN"
    assert len(quorum["data"]["granted"]) == 4
    assert address(five[2]) not in quorum["data"]["granted"]
    assert address(five[2]) in quorum["detail"]


def test_three_paused_redlock_nodes_of_five_fail(
    five: list[RedisNode], capsys: pytest.CaptureFixture[str]
) -> None:
    """Three of five paused: no quorum (2/5 < 3): quorum FAILs, nothing is tolerated, exit
    status 1, within a bounded time."""
    with paused(*five[:3]):
        status, report, took = doctor(capsys, "--redlock", redlock_arg(five))
    assert status == 1
    assert report["verdict"] == "FAIL"
    assert took < 10
    (quorum,) = lines(report, "quorum")
    assert quorum["status"] == "FAIL"
    assert len(quorum["data"]["granted"]) == 2
    down = {c["node"].split()[0] for c in lines(report, "connect") if c["status"] == "FAIL"}
    assert down == {address(n) for n in five[:3]}
    assert not any(c.get("tolerated") for c in report["checks"])


def test_redis_and_redlock_together(
    make_nodes: Callable[..., list[RedisNode]], capsys: pytest.CaptureFixture[str]
) -> None:
    """--redis and --redlock in one run: both parts reported, exit status 0."""
    data, *locks = make_nodes(4)
    status, report, _ = doctor(capsys, "--redis", data.url, "--redlock", redlock_arg(locks),
                               *SMALL)
    assert status == 0, report
    assert report["redis"] == address(data)
    assert report["redlock"] == [address(n) for n in locks]
    assert lines(report, "quorum")[0]["status"] == "OK"
    assert lines(report, "stampede")[0]["status"] == "OK"
    for node in (data, *locks):
        assert scratch_keys(node) == []


def test_redis_errors_are_not_raised(
    fresh_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node that refuses scripts (a user without EVAL): a FAIL line, not a traceback."""
    admin = fresh_node.client()
    try:
        admin.execute_command("ACL", "SETUSER", "noscript", "on", ">pw", "~*", "&*", "+@all",
                              "-@scripting")
    finally:
        admin.close()
    url = f"redis://noscript:pw@{fresh_node.host}:{fresh_node.port}/0"
    status, report, _ = doctor(capsys, "--redis", url, "--processes", "1", "--threads", "1")
    assert status == 1
    assert lines(report, "scripts")[0]["status"] == "FAIL"
    (acl,) = lines(report, "acl")
    assert acl["status"] == "FAIL"
    assert "+eval +script|load +evalsha" in acl["detail"]
    with pytest.raises(redis.ResponseError):  # the user really cannot run scripts
        redis.Redis.from_url(url).eval("return 1", 0)
