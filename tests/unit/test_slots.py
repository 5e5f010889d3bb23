"""Hash tags (pure): a lock key and its fence counter always share a Redis Cluster slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from fleetcache.locking.slots import check_cluster_name, companion, hash_tag


@pytest.mark.parametrize(("key", "tag"), [
    ("jobs", None), ("{jobs}", "jobs"), ("fc:ns:5:{abc}:lock", "abc"), ("a{}b", None),
    ("a{b", None), ("a}{b}", "b"), ("{a}{b}", "a"), ("x{y}z{w}", "y"),
])
def test_hash_tag_reads_keys_as_redis_does(key: str, tag: str | None) -> None:
    """hash_tag follows Redis's rule: the first {...} with something inside, else none."""
    assert hash_tag(key) == tag


@pytest.mark.parametrize("key", ["jobs", "fc:ns:5:{abc}:lock", "a{b", "é{x"])
def test_companion_shares_the_slot(key: str) -> None:
    """companion(key, ':fence') hashes to key's slot, whatever key looks like."""
    assert key_slot(companion(key, ":fence").encode()) == key_slot(key.encode())


def test_tagged_keys_keep_their_names() -> None:
    """A key with a tag gets the plain suffix (the cache's own lock keys are unchanged)."""
    assert companion("fc:ns:5:{abc}:lock", ":fence") == "fc:ns:5:{abc}:lock:fence"
    assert companion("jobs", ":fence") == "{jobs}:fence"


@pytest.mark.parametrize("key", ["a{}b", "lock:{}", "x}y", "{}x"])
def test_untaggable_names_are_refused_on_a_cluster(key: str) -> None:
    """A name without a tag that holds '}' is refused for Cluster with a clear message."""
    with pytest.raises(ValueError, match="hash tag"):
        check_cluster_name(key)
    check_cluster_name("{t}" + key)  # with a tag it is fine
