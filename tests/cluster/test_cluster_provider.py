"""The Redis Cluster provider (`fleetcache.testing.cluster`) against real clusters.

A shared 3-master, 3-replica cluster serves the read-mostly tests (`cluster`); a failover
gets a cluster of its own (`fresh_cluster`); the shared one is repaired by `heal()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from fleetcache.testing import RedisClusterHandle, RedisNode, port_is_open, redis_cluster
from fleetcache.testing.cluster import (
    BUS_OFFSET,
    SLOTS,
    cluster_port,
    key_slot,
    parse_cluster_nodes,
    parse_info,
    slot_ranges,
)
from fleetcache.testing.waiting import wait_until

# What a cluster client may raise while the cluster reconfigures (RedisClusterException is
# not a RedisError).
CLUSTER_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)

NODES_REPLY = """\
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,host1 myself,master - 0 0 1 \
connected 0-5459 5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 \
connected 5461-16383
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave \
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave,fail \
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238317741 6 disconnected
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,noaddr - 1426238316232 0 5 disconnected
"""


def cluster_info(node: RedisNode) -> dict[str, str]:
    client = node.client(decode_responses=True)
    try:
        return parse_info(str(client.execute_command("CLUSTER", "INFO")))
    finally:
        client.close()


def dbsize(node: RedisNode) -> int:
    client = node.client()
    try:
        return int(client.dbsize())
    finally:
        client.close()


def identity(node: RedisNode) -> Any:
    """The node's PID (local) or container id (containers), read while it runs."""
    if node.kind == "containers":
        return node.container.get_wrapped_container().id  # type: ignore[attr-defined]
    return node.pid  # type: ignore[attr-defined]


def is_gone(node: RedisNode, ident: Any) -> bool:
    """True when neither the node's process/container nor its ports remain."""
    if port_is_open(node.host, node.port) or port_is_open(node.host, node.port + BUS_OFFSET):
        return False
    if node.kind == "containers":
        import docker  # noqa: PLC0415
        import docker.errors  # noqa: PLC0415

        client = docker.from_env(version="auto")
        try:
            client.containers.get(ident)
        except docker.errors.NotFound:
            return True
        finally:
            client.close()
        return False
    try:  # a recycled PID is fine, as long as it is not a redis-server on this port
        cmdline = Path(f"/proc/{ident}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return True
    return f":{node.port}".encode() not in cmdline


# -- no Redis needed -------------------------------------------------------------------------


def test_parse_cluster_nodes_reads_roles_slots_and_flags() -> None:
    """CLUSTER NODES lines of 6.2/7.x parse into roles, links and slot ranges."""
    entries = {e.port: e for e in parse_cluster_nodes(NODES_REPLY)}
    first = entries[30001]
    assert first.is_master
    assert not first.failed
    assert "myself" in first.flags
    assert first.slots == ((0, 5459), (5460, 5460))  # the migrating slot is not counted
    assert first.slot_count == 5461
    assert first.serves(5460)
    assert not first.serves(5461)
    assert entries[30002].slot_count == SLOTS - 5461
    replica = entries[30004]
    assert not replica.is_master
    assert replica.master_id == first.id
    assert replica.connected
    assert entries[30006].failed
    assert not entries[30006].connected
    assert entries[0].failed
    assert entries[0].host == ""


def test_slot_ranges_cover_every_slot_once() -> None:
    """The even split hands each of the 16384 slots to exactly one master."""
    for masters in range(1, 8):
        ranges = slot_ranges(masters)
        assert ranges[0][0] == 0
        assert ranges[-1][1] == SLOTS - 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
        sizes = [end - start + 1 for start, end in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_cluster_port_leaves_room_for_the_bus_port() -> None:
    """cluster_port returns a port whose bus port (+10000) exists and is free."""
    port = cluster_port()
    assert port + BUS_OFFSET <= 65535
    assert not port_is_open("127.0.0.1", port + BUS_OFFSET)


# -- the shared cluster ----------------------------------------------------------------------


def test_cluster_comes_up_with_three_masters_three_replicas_and_every_slot(
    cluster: RedisClusterHandle,
) -> None:
    """3 masters with one replica each; every node sees all 16384 slots served and ok."""
    masters, replicas = cluster.masters(), cluster.replicas()
    assert len(masters) == 3
    assert len(replicas) == 3
    assert set(masters) | set(replicas) == set(cluster.nodes)
    assert all(len(cluster.replicas_of(master)) == 1 for master in masters)
    for node in cluster.nodes:
        info = cluster_info(node)
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == int(info["cluster_slots_ok"]) == SLOTS
        assert int(info["cluster_known_nodes"]) == 6
    assert cluster.url == f"redis://127.0.0.1:{cluster.nodes[0].port}"


def test_keys_spread_over_every_master(cluster: RedisClusterHandle) -> None:
    """300 keys written through a RedisCluster client land on all three masters."""
    rc = cluster.client()
    try:
        for i in range(300):
            rc.set(f"spread:{i}", i)
    finally:
        rc.close()
    counts = {master.port: dbsize(master) for master in cluster.masters()}
    assert all(count > 0 for count in counts.values()), counts
    assert sum(counts.values()) == 300


def test_master_of_names_the_node_that_holds_the_key(cluster: RedisClusterHandle) -> None:
    """master_of(key) is the master that has the key; the others answer MOVED."""
    rc = cluster.client()
    masters = cluster.masters()
    try:
        for i in range(30):
            key = f"where:{i}"
            rc.set(key, i)
            owner = cluster.master_of(key)
            assert int(rc.cluster_keyslot(key)) == key_slot(key)
            for master in masters:
                client = master.client()
                try:
                    if master is owner:
                        assert client.get(key) == str(i).encode()
                    else:
                        with pytest.raises(redis.exceptions.MovedError):
                            client.get(key)
                finally:
                    client.close()
    finally:
        rc.close()


def test_async_client_reads_and_writes(cluster: RedisClusterHandle) -> None:
    """async_client() is a working redis.asyncio.cluster.RedisCluster."""

    async def roundtrip() -> Any:
        client = cluster.async_client()
        try:
            await client.set("async:key", "value")
            return await client.get("async:key")
        finally:
            await client.aclose()

    assert asyncio.run(roundtrip()) == b"value"


def test_heal_brings_a_killed_master_back_as_a_replica(cluster: RedisClusterHandle) -> None:
    """After SIGKILL and failover, heal() restarts the old master as its heir's replica."""
    old = cluster.masters()[0]
    old.kill()
    heir = cluster.failover_wait(old)
    cluster.heal()
    assert old.is_running
    assert cluster.replicas_of(heir) == [old]
    assert len(cluster.masters()) == len(cluster.replicas()) == 3
    wait_until(lambda: not any(e.failed for e in cluster.view()), 10, "no node flagged failed")
    assert len(cluster.view()) == 6  # no stale identity of the restarted node is left


def test_a_paused_master_is_replaced_and_comes_back_as_a_replica(
    cluster: RedisClusterHandle,
) -> None:
    """A hung (SIGSTOP / docker pause) master loses its slots; once resumed it replicates."""
    old = cluster.masters()[1]
    old.pause()
    try:
        heir = cluster.failover_wait(old)
    finally:
        cluster.heal()  # resumes it
    assert not old.paused
    assert old in cluster.replicas_of(heir)


# -- clusters of their own -------------------------------------------------------------------


def test_killed_master_fails_over_to_its_replica(fresh_cluster: RedisClusterHandle) -> None:
    """SIGKILL of a master: failover_wait sees its replica promoted, the cluster ok, and a
    RedisCluster client reads the replicated key and writes again."""
    rc = fresh_cluster.client()
    try:
        rc.set("fo:key", "before")
        old = fresh_cluster.master_of("fo:key")
        heirs = fresh_cluster.replicas_of(old)
        with contextlib.closing(old.client()) as direct:
            assert direct.wait(1, 2000) == 1  # the replica has the key
        started = time.monotonic()
        old.kill()
        promoted = fresh_cluster.failover_wait(old, timeout=15)
        elapsed = time.monotonic() - started
        assert promoted in heirs
        assert fresh_cluster.master_of("fo:key") is promoted
        assert old not in fresh_cluster.masters()
        assert len(fresh_cluster.masters()) == 3

        def roundtrip() -> bool:
            try:  # no retries configured: the first call after the crash may fail
                rc.set("fo:after", "x")
                return bool(rc.get("fo:key") == b"before" and rc.get("fo:after") == b"x")
            except CLUSTER_ERRORS:
                return False

        wait_until(roundtrip, 10, "the client to read and write after the failover")
        assert elapsed < 10, f"failover took {elapsed:.1f}s"
    finally:
        rc.close()


def test_every_node_stops_when_the_context_exits_cleanly_or_by_an_exception() -> None:
    """Leaving redis_cluster() stops every node (process or container gone, ports closed),
    on a clean exit and when the body raises (both cases run side by side)."""

    def run(body_raises: bool) -> list[tuple[RedisNode, Any]]:
        seen: list[tuple[RedisNode, Any]] = []
        with contextlib.ExitStack() as stack:
            if body_raises:
                stack.enter_context(pytest.raises(RuntimeError, match="boom"))
            with redis_cluster(masters=2, replicas=1) as handle:
                seen.extend((node, identity(node)) for node in handle.nodes)
                assert len(handle.masters()) == 2
                if body_raises:
                    raise RuntimeError("boom")
        return seen

    with ThreadPoolExecutor(max_workers=2) as pool:
        clean, raised = pool.map(run, [False, True])
    for seen in (clean, raised):
        assert len(seen) == 4
        assert all(is_gone(node, ident) for node, ident in seen)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_block(count: int) -> int:
    """A base port with `count` consecutive bindable ports, their bus ports too -- all below
    Linux's ephemeral range (32768+), where outgoing connections could take them."""
    for _ in range(200):
        base = random.randrange(20000, 32768 - BUS_OFFSET - count)
        ports = [*range(base, base + count), *range(base + BUS_OFFSET, base + BUS_OFFSET + count)]
        if all(_bindable(port) for port in ports):
            return base
    raise AssertionError("no free block of ports")


def test_cli_up_status_down_runs_a_detached_cluster(tmp_path: Path) -> None:
    """`python -m fleetcache.testing.cluster up/status/down` starts detached servers with
    PID files, reports their roles, and stops every one of them."""
    base = _free_block(3)
    common = ["--state-dir", str(tmp_path), "--ports-from", str(base), "--masters", "1"]
    common += ["--replicas", "1", "--redlock-ports-from", str(base + 2), "--redlock-masters", "1"]

    def cli(command: str, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "fleetcache.testing.cluster", command, *common, *extra]
        return subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)

    try:
        up = cli("up", "--node-timeout-ms", "1000")
        assert up.returncode == 0, up.stderr
        status = cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"127.0.0.1:{base} master (cluster)" in status.stdout
        assert f"127.0.0.1:{base + 1} replica of 127.0.0.1:{base}" in status.stdout
        assert f"127.0.0.1:{base + 2} master (standalone)" in status.stdout
        assert "cluster_state: ok" in status.stdout
        assert len(list(tmp_path.glob("redis-*.pid"))) == 3
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert "stopped 3" in down.stdout
    assert not list(tmp_path.glob("redis-*.pid"))
    assert not any(port_is_open("127.0.0.1", p) for p in (base, base + 1, base + 2))
