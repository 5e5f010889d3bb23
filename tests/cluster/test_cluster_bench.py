"""``bench hit --cluster`` and ``bench stampede --cluster`` on a real Redis Cluster (3 masters,
3 replicas): a hit is one GET on the owning master; a stampede over many keys makes one
upstream call per key per round, holds at most one shard connection per master per process
and leaves no key on any master."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import redis

from fleetcache.cli import main
from fleetcache.cli.bench_hit import bench_request
from fleetcache.cli.common import drop_keys
from fleetcache.core.keys import request_hash
from fleetcache.testing import RedisClusterHandle, RedisNode

HIT_SERIES = ["fleetcache get", "fleetcache get_or_set", "raw GET + orjson.loads"]


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, Any]:
    """Run the CLI with ``--json``: (exit status, the parsed report)."""
    status = main([*argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def keys_left(cluster: RedisClusterHandle, pattern: str) -> list[bytes]:
    """Keys matching ``pattern`` on any master."""
    found: list[bytes] = []
    for master in cluster.masters():
        client = master.client()
        try:
            found += list(client.scan_iter(match=pattern, count=1000))
        finally:
            client.close()
    return found


def test_bench_hit_cluster_is_one_get_on_the_owning_master(
    cluster: RedisClusterHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench hit --cluster returns the stored value with one GET per hit, all of them on the
    master that owns the key, one round trip each, and leaves no key behind."""
    status, out = run_json(capsys, ["bench", "hit", "--cluster", "--redis", cluster.url,
                                    "--rounds", "3", "--ops", "200", "--value-size", "500"])
    assert status == 0
    assert out["wrong_values"] == 0
    assert out["config"]["masters"] == 3
    info = out["cluster"]
    owner = cluster.master_of("{" + request_hash(bench_request()) + "}")
    assert info["entry_master"] == f"{owner.host}:{owner.port}"
    raw_owner = cluster.master_of(f"fcbench:{info['namespace']}:raw")
    assert info["raw_master"] == f"{raw_owner.host}:{raw_owner.port}"
    assert len(info["masters"]) == 3
    for name in HIT_SERIES:
        # Other clients of the cluster could only add GETs: one per hit, give or take noise.
        assert set(out["server_commands_per_hit"][name]) == {"get"}, name
        assert out["server_commands_per_hit"][name]["get"] == pytest.approx(1.0, abs=0.02)
        expected = info["raw_master"] if name == HIT_SERIES[2] else info["entry_master"]
        assert list(info["server_commands_per_hit_by_master"][name]) == [expected], name
        assert out["round_trips_per_hit"][name] == pytest.approx(1.0, abs=0.02), name
        assert math.isfinite(out["median_op_s"][name])
        assert out["median_op_s"][name] > 0
    assert keys_left(cluster, f"*{info['namespace']}*") == []


def test_bench_stampede_cluster_one_call_per_key_per_round(
    cluster: RedisClusterHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench stampede --cluster over 30 keys: exactly one upstream call per key asked in each
    round, equal values, no error, at most one shard link per master per process, and no key
    of the run left on any master."""
    status, out = run_json(capsys, [
        "bench", "stampede", "--cluster", "--redis", cluster.url, "--keys", "30", "--asks",
        "10", "--processes", "2", "--threads", "4", "--rounds", "2", "--upstream", "0.05"])
    assert status == 0
    assert out["config"]["cluster"] is True
    assert out["masters"] == 3
    assert out["errors"] == 0
    assert out["all_values_equal"] is True
    assert out["rounds_with_one_call"] == 2
    for rd in out["rounds"]:
        assert rd["requests"] == 2 * 4 * 10
        assert rd["keys_asked"] == rd["keys_with_one_call"] == rd["upstream_calls"]
        assert 10 <= rd["keys_asked"] <= 30
        assert rd["max_calls_per_key"] == 1
        assert rd["calls_for_unasked_keys"] == 0
        assert rd["bench_commands"] == rd["upstream_calls"]  # one HINCRBY per upstream call
        assert rd["commands_per_request"] > 0
    assert out["calls_per_key"] == 1.0
    assert len(out["links_per_process"]) == 2
    assert 1 <= out["links_per_process_max"] <= 3
    assert out["subscription_connections_per_process_max"] <= 3 + 1
    assert keys_left(cluster, f"*{out['config']['namespace']}*") == []


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "hit", "--async", "--cluster"],
        ["bench", "stampede", "--async", "--cluster"],
        ["bench", "stampede", "--keys", "3", "--asks", "5"],
        ["bench", "stampede", "--keys", "0"],
    ],
)
def test_cluster_options_refused_before_any_redis(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Unsupported combinations (--async --cluster) and bad --keys/--asks exit 2 with a
    message, before any Redis is started or touched."""
    assert main([*argv, "--redis", "redis://127.0.0.1:1/0"]) == 2
    assert capsys.readouterr().err.strip()


def test_cluster_flag_on_a_single_node_is_refused(
    redis_node: RedisNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """--cluster with a URL naming a plain (non-cluster) Redis exits 2 and says so."""
    assert main(["bench", "stampede", "--cluster", "--redis", redis_node.url]) == 2
    assert "not a Redis Cluster node" in capsys.readouterr().err


def test_drop_keys_cleans_every_master(cluster: RedisClusterHandle) -> None:
    """drop_keys on a cluster client deletes the matching keys of every master, only them."""
    client: redis.RedisCluster = cluster.client()
    try:
        for i in range(200):
            client.set(f"dropme:{i}", i)
        client.set("keepme", 1)
        owners = {cluster.master_of(f"dropme:{i}").port for i in range(200)}
        assert len(owners) == 3
        assert drop_keys(client, "dropme:*") == 200
        assert keys_left(cluster, "dropme:*") == []
        assert client.get("keepme") == b"1"
    finally:
        client.close()
