"""Redlock's pure decisions (fleetcache.locking.quorum): quorum, validity, replies, fences."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from fleetcache.locking.lease import drift
from fleetcache.locking.quorum import (
    NodeReply,
    count_at_least,
    count_true,
    fence_for,
    parse_acquire,
    quorum,
    validity,
)


def granted(counter: int) -> NodeReply:
    """A node that granted the lock and bumped its counter to ``counter``."""
    return NodeReply(granted=True, counter=counter)


def refused(counter: int, *, abstained: bool = False) -> NodeReply:
    """A node that refused (or abstained) with its current ``counter``."""
    return NodeReply(granted=False, counter=counter, abstained=abstained)


def failed() -> NodeReply:
    """A node that did not answer."""
    return NodeReply(error=redis.exceptions.TimeoutError("node did not answer in time"))


# -- quorum and validity -------------------------------------------------------------------


@pytest.mark.parametrize(("n", "q"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)])
def test_quorum_is_a_strict_majority(n: int, q: int) -> None:
    """quorum(n) is n // 2 + 1: the smallest count of which any two sets intersect."""
    assert quorum(n) == q
    assert 2 * quorum(n) > n


def test_validity_subtracts_elapsed_and_drift() -> None:
    """validity = ttl - elapsed - (ttl * 0.01 + 2 ms)."""
    assert drift(10.0) == pytest.approx(0.102)
    assert validity(10.0, 1.0) == pytest.approx(10.0 - 1.0 - 0.102)
    assert validity(0.5, 0.0) == pytest.approx(0.5 - 0.007)


def test_validity_goes_non_positive_when_the_round_took_the_whole_ttl() -> None:
    """A round that took about the TTL leaves no validity: the lease must not be handed out."""
    assert validity(1.0, 0.99) < 0
    assert validity(1.0, 0.988) == pytest.approx(0.0)
    assert validity(1.0, 5.0) < 0


# -- parse_acquire -------------------------------------------------------------------------


def test_parse_acquire_granted_reply() -> None:
    """The script's granted reply {1, "<counter>", 0} parses to granted with its counter."""
    assert parse_acquire([1, b"1700000000000042", 0]) == NodeReply(
        granted=True, counter=1_700_000_000_000_042, abstained=False
    )


def test_parse_acquire_refused_and_abstained_replies() -> None:
    """{0, c, 0} is a refusal, {0, c, 1} an abstention; both carry the current counter."""
    assert parse_acquire([0, b"7", 0]) == NodeReply(granted=False, counter=7, abstained=False)
    assert parse_acquire([0, b"7", 1]) == NodeReply(granted=False, counter=7, abstained=True)
    assert parse_acquire((0, "8", 1)) == NodeReply(granted=False, counter=8, abstained=True)


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.TimeoutError("node did not answer in time"),
        redis.exceptions.ConnectionError("Connection refused"),
        redis.exceptions.ResponseError("BUSY Redis is busy running a script"),
        OSError(104, "Connection reset by peer"),
    ],
)
def test_parse_acquire_keeps_a_node_error(exc: BaseException) -> None:
    """An exception in place of a reply becomes a non-granting reply carrying that error."""
    reply = parse_acquire(exc)
    assert reply.error is exc
    assert not reply.granted
    assert reply.counter is None
    assert not reply.abstained


@pytest.mark.parametrize(
    "bad",
    [
        None,
        b"OK",
        b"abc",  # three bytes: once unpacked as three "integers" and counted as a grant
        "101",  # likewise a three-character string
        {1: 1, 2: 2, 3: 3},
        [],
        [1, b"5"],
        [1, b"5", 0, 0],
        [1, b"x", 0],
        [1, b"-5", 0],
        [1, b"5.5", 0],
        [1, 5.7, 0],
        [1, None, 0],
        [1, True, 0],
        [2, b"5", 0],
        [-1, b"5", 0],
        [b"1", b"5", b"0"],
        [True, b"5", False],
        [1, b"5", 1],  # granted and abstained at once
    ],
)
def test_parse_acquire_rejects_a_malformed_reply(bad: Any) -> None:
    """Anything but [0|1, decimal counter, 0|1] is an error reply and never a grant."""
    reply = parse_acquire(bad)
    assert isinstance(reply.error, ValueError)
    assert "unexpected acquire reply" in str(reply.error)
    assert not reply.granted
    assert reply.counter is None


# -- fence_for -----------------------------------------------------------------------------


def test_fence_without_write_back_when_the_granting_majority_agrees() -> None:
    """The healthy path: every granting node bumped to the same counter -> one round."""
    assert fence_for([granted(11)] * 5) == (11, False)


def test_fence_without_write_back_when_only_a_bare_majority_answered() -> None:
    """3 of 5 granted at the same counter, 2 unreachable: still no write-back needed."""
    replies = [granted(11), failed(), granted(11), failed(), granted(11)]
    assert fence_for(replies) == (11, False)


def test_fence_write_back_when_granting_counters_diverge() -> None:
    """Granting nodes at different counters: the max is handed out after a write-back."""
    replies = [granted(11), granted(9), granted(11), failed(), failed()]
    assert fence_for(replies) == (11, True)


def test_fence_write_back_for_a_fresh_name() -> None:
    """A fresh name starts from each node's own server time: counters differ, write back."""
    replies = [granted(1_700_000_000_000_001 + i) for i in range(5)]
    assert fence_for(replies) == (1_700_000_000_000_005, True)


def test_fence_goes_past_a_refusing_node_ahead_of_the_granters() -> None:
    """A refusing node's counter c counts as c + 1, so the fence passes it (and is written
    back, since no granting node reached it)."""
    replies = [granted(10), granted(10), granted(10), refused(12), refused(3)]
    assert fence_for(replies) == (13, True)


def test_fence_a_refusing_node_at_the_same_counter_forces_one_more() -> None:
    """A refusing node already at the granters' counter c pushes the fence to c + 1."""
    replies = [granted(10), granted(10), granted(10), refused(10), failed()]
    assert fence_for(replies) == (11, True)


def test_fence_refusing_nodes_behind_need_no_write_back() -> None:
    """Refusing nodes whose counter + 1 does not exceed the granters' change nothing."""
    replies = [granted(10), granted(10), granted(10), refused(9), refused(2)]
    assert fence_for(replies) == (10, False)


def test_fence_counts_an_abstaining_node_like_a_refusal() -> None:
    """An abstaining (restarted, empty) node reports its time-based counter; the fence
    goes past it too, so it never lags what the node will grant later."""
    big = 1_700_000_000_000_000
    replies = [granted(10), granted(10), granted(10), refused(big, abstained=True), failed()]
    assert fence_for(replies) == (big + 1, True)


def test_fence_ignores_nodes_that_failed() -> None:
    """Errors carry no counter and never raise the fence."""
    replies = [failed(), granted(5), granted(5), failed(), granted(5)]
    assert fence_for(replies) == (5, False)


def test_fence_is_above_every_answering_node() -> None:
    """The fence handed out is >= every granter's counter and > every refuser's counter."""
    replies = [granted(20), refused(25), granted(18), granted(19), refused(4)]
    fence, write_back = fence_for(replies)
    assert write_back
    assert fence == 26
    for r in replies:
        assert r.counter is not None
        assert fence >= r.counter if r.granted else fence > r.counter


# -- count_at_least and count_true ---------------------------------------------------------


def test_count_at_least_counts_write_back_acks_at_or_above_the_fence() -> None:
    """Write-back replies (decimal strings) confirm the fence when >= it; errors and junk
    do not count."""
    acks: list[Any] = [b"26", b"27", b"25", redis.exceptions.TimeoutError("t"), b"junk", None, 26]
    assert count_at_least(acks, 26) == 3


def test_count_true_counts_only_integer_one() -> None:
    """Release/extend replies: only 1 counts; 0, errors and other values do not."""
    replies: list[Any] = [1, 0, 1, redis.exceptions.ConnectionError("down"), b"1", None, 1]
    assert count_true(replies) == 3
