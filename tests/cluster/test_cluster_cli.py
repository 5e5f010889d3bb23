"""The admin commands on a Redis Cluster: ``stats``, ``invalidate`` and ``purge`` see the
keys of every master, not only those of the node the URL names."""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

import pytest

from fleetcache import Cache, Policy
from fleetcache.cli import main


def test_stats_and_purge_cover_every_master(
    cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """60 entries spread over 3 masters: stats counts all their keys; after invalidate,
    purge deletes them all and stats sees only the generation key."""
    name = f"cli-{uuid.uuid4().hex[:8]}"
    with Cache(cluster.client(), namespace=name, policy=Policy(ttl=600)) as cache:
        for i in range(60):
            cache.get_or_set({"i": i}, functools.partial(int, i))
    masters = {cluster.master_of(f"fc:{name}:x:{{{i}}}").port for i in range(60)}
    assert len(masters) == 3
    assert main(["stats", "--redis", cluster.url, "--namespace", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kinds"]["entries"]["current_generation"] == 60
    # the generation key; per entry its value, its fence and its lock's fence counter
    assert out["keys"] == 1 + 60 * 3
    assert main(["invalidate", "--redis", cluster.url, "--namespace", name]) == 0
    assert main(["purge", "--redis", cluster.url, "--namespace", name]) == 0
    capsys.readouterr()
    assert main(["stats", "--redis", cluster.url, "--namespace", name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["keys"] == 1
