"""Smoke test of docker-compose.cluster.yml through `scripts/cluster.sh`, on its fixed ports.

Runs only with `FLEETCACHE_COMPOSE_SMOKE=1` (set by .ci/run when a Docker engine and
docker-compose are there, along with `FLEETCACHE_REDIS_IMAGE`, the locally built image), as
it needs 127.0.0.1:7000-7005 (bus 17000-17005) and 7100-7104 to itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import redis
import redis.cluster

from fleetcache.locking import Redlock
from fleetcache.testing import port_is_open

pytestmark = pytest.mark.skipif(
    os.environ.get("FLEETCACHE_COMPOSE_SMOKE") != "1",
    reason="set FLEETCACHE_COMPOSE_SMOKE=1 (needs a Docker engine, docker-compose and ports "
    "7000-7005, 7100-7104) to run the docker-compose.cluster.yml smoke test",
)

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_PORTS = list(range(7000, 7006))
REDLOCK_PORTS = list(range(7100, 7105))


def cluster_sh(command: str) -> subprocess.CompletedProcess[str]:
    """`bash scripts/cluster.sh COMMAND`, forced onto docker-compose."""
    env = {**os.environ, "FLEETCACHE_CLUSTER_MODE": "compose"}
    return subprocess.run(
        ["bash", "scripts/cluster.sh", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_compose_cluster_and_redlock_masters_serve_then_go_away() -> None:
    """`cluster.sh up` brings a 3-master cluster on 7000 and 5 Redlock masters; a key and
    a Redlock lease work; `cluster.sh down` leaves every port closed."""
    ports = CLUSTER_PORTS + REDLOCK_PORTS + [p + 10000 for p in CLUSTER_PORTS]
    busy = [port for port in ports if port_is_open("127.0.0.1", port)]
    assert not busy, f"ports {busy} are taken: the smoke test needs them to itself"
    try:
        up = cluster_sh("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "cluster_state: ok" in up.stdout
        rc = redis.cluster.RedisCluster(
            host="127.0.0.1", port=7000, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        try:
            assert rc.cluster_info()["cluster_state"] == "ok"
            masters = [node for node in rc.get_nodes() if node.server_type == "primary"]
            assert len(masters) == 3
            rc.set("smoke:key", "value")
            assert rc.get("smoke:key") == b"value"
        finally:
            rc.close()
        clients = [
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0) for port in REDLOCK_PORTS
        ]
        try:
            lock = Redlock(clients)
            lease = lock.acquire("smoke", ttl=5.0, wait=2.0)
            assert lock.release(lease)
        finally:
            for client in clients:
                client.close()
    finally:
        down = cluster_sh("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [port for port in ports if port_is_open("127.0.0.1", port)]
