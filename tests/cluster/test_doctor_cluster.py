"""``python -m fleetcache doctor`` on a real Redis Cluster (3 masters, 3 replicas): every
node checked, the stampede and fencing through a cluster client, and a paused master named
in a FAIL line within a bounded time."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from fleetcache.__main__ import main
from fleetcache.testing import RedisClusterHandle

#: The stampede, small: 2 processes x 2 threads.
SMALL = ["--processes", "2", "--threads", "2"]
PER_NODE = ("connect", "version", "scripts", "pubsub", "spubsub", "acl", "cluster")


def doctor(capsys: pytest.CaptureFixture[str], url: str) -> tuple[int, dict[str, Any], float]:
    """Run ``doctor --redis url --json``: (exit status, the report, seconds it took)."""
    start = time.monotonic()
    status = main(["doctor", "--redis", url, *SMALL, "--json"])
    took = time.monotonic() - start
    return status, json.loads(capsys.readouterr().out), took


def of(report: dict[str, Any], check: str, address: str | None = None) -> list[dict[str, Any]]:
    """The lines of ``check`` (on the node at ``address``)."""
    return [
        line
        for line in report["checks"]
        if line["check"] == check and (address is None or line["node"].split()[0] == address)
    ]


def leftovers(cluster: RedisClusterHandle) -> list[bytes]:
    """The doctor's scratch keys still on any master."""
    found: list[bytes] = []
    for node in cluster.masters():
        client = node.client()
        try:
            found += client.scan_iter(match="fc:doctor-*")
        finally:
            client.close()
    return found


def test_healthy_cluster_passes(
    cluster: RedisClusterHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every master and replica passes the per-node checks (sharded pub/sub included), all
    slots are covered, the stampede through a cluster client makes 1 upstream call, the
    stale fenced write is refused, the exit status is 0, and no key is left on any master."""
    status, report, _ = doctor(capsys, cluster.url)
    assert status == 0, report
    assert report["mode"] == "cluster"
    assert len(report["nodes"]) == len(cluster.nodes) == 6
    for node in cluster.nodes:
        address = f"{node.host}:{node.port}"
        for check in PER_NODE:
            assert [line["status"] for line in of(report, check, address)] == ["OK"], (
                check,
                address,
                report,
            )
    assert of(report, "slots")[0]["status"] == "OK"
    assert "all 16384 slots covered" in of(report, "slots")[0]["detail"]
    (stampede,) = of(report, "stampede")
    assert stampede["status"] == "OK"
    assert stampede["data"]["upstream_calls"] == 1
    assert of(report, "fencing")[0]["status"] == "OK"
    assert of(report, "cleanup")[0]["status"] == "OK"
    assert leftovers(cluster) == []


#: The README's least-privilege ACL for the cache's user on a cluster.
CLUSTER_ACL = (
    "resetkeys ~fc:* resetchannels &fc:* -@all +get +set +mget +del +unlink +incr +incrby "
    "+pexpire +pttl +time +ping +eval +evalsha +script|load +publish +subscribe +scan "
    "+info +cluster|slots +command +spublish +ssubscribe +sunsubscribe"
)


def test_least_privilege_user_passes_on_a_cluster(
    cluster: RedisClusterHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user granted exactly the README's cluster ACL line passes the acl check on every
    node and the stampede and fencing through a cluster client; no node logged a refusal
    of a command the cache sent (only the doctor's own, which it works around)."""
    admins = [node.client() for node in cluster.nodes]
    try:
        for admin in admins:
            admin.execute_command("ACL", "LOG", "RESET")
            admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", *CLUSTER_ACL.split())
        status, report, _ = doctor(capsys, cluster.url.replace("//", "//app:pw@", 1))
        refused = {e[b"object"] for a in admins for e in a.execute_command("ACL", "LOG")}
    finally:
        for admin in admins:
            admin.execute_command("ACL", "DELUSER", "app")
            admin.close()
    assert status == 0, report
    assert {line["status"] for line in of(report, "acl")} == {"OK"}
    for check in ("fencing", "stampede", "cleanup"):
        assert of(report, check)[0]["status"] == "OK", (check, report)
    assert refused <= {b"info", b"acl|whoami", b"cluster|nodes", b"cluster|info"}
    assert leftovers(cluster) == []


def test_paused_master_fails_with_a_clear_line(
    fresh_cluster: RedisClusterHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    """One master paused (SIGSTOP): a FAIL connect line naming it within seconds, the fleet
    checks skipped (not hung), exit status 1."""
    entry = fresh_cluster.url.rsplit(":", 1)[1]
    master = next(m for m in fresh_cluster.masters() if str(m.port) != entry)
    address = f"{master.host}:{master.port}"
    master.pause()
    try:
        status, report, took = doctor(capsys, fresh_cluster.url)
    finally:
        master.resume()
    assert status == 1
    assert report["verdict"] == "FAIL"
    assert took < 10
    (fail,) = of(report, "connect", address)
    assert fail["status"] == "FAIL"
    assert fail["node"] == f"{address} (master)"
    assert "no reply within 1 s" in fail["detail"]
    assert [line["status"] for line in of(report, "stampede")] == ["SKIP"]
    assert address in of(report, "stampede")[0]["detail"]
    # The other masters answered and were checked.
    others = [m for m in fresh_cluster.nodes if m.port != master.port]
    for node in others:
        assert of(report, "connect", f"{node.host}:{node.port}")[0]["status"] == "OK"
