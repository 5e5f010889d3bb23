"""Redis Cluster fixtures: one shared cluster per session, and private ones for tests that
break things.

- `redis_cluster_handle` (session): 3 masters + 3 replicas on the session's provider kind
  (`FLEETCACHE_REDIS`), stopped at the end of the session.
- `cluster` (function): that cluster, repaired if an earlier test killed or paused nodes
  (`heal()`: dead nodes restarted and re-joined), healthy, every master flushed.
- `fresh_cluster` (function): a cluster of its own (3 + 3) for a destructive test, always
  stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetcache.testing import RedisClusterHandle, redis_cluster


@pytest.fixture(scope="session")
def redis_cluster_handle() -> Iterator[RedisClusterHandle]:
    """One 3-master, 3-replica cluster shared by the session."""
    with redis_cluster(masters=3, replicas=1) as handle:
        yield handle


@pytest.fixture
def cluster(redis_cluster_handle: RedisClusterHandle) -> RedisClusterHandle:
    """The shared cluster: every node back and running, healthy, and empty."""
    handle = redis_cluster_handle
    if any(node.paused or not node.is_running for node in handle.nodes):
        handle.heal()
    handle.wait_healthy()
    handle.flushall()
    return handle


@pytest.fixture
def fresh_cluster() -> Iterator[RedisClusterHandle]:
    """A 3-master, 3-replica cluster for this test alone."""
    with redis_cluster(masters=3, replicas=1) as handle:
        yield handle
