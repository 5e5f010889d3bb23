"""Redlock on 5 real masters under faults: paused, killed and restarted-empty nodes.

Every Redlock client here has a small explicit per-node timeout (its socket timeout), so a
paused node costs that much per round and no more.  Measured times are printed (run with
``-s`` or ``-rP`` to see them); the assertions keep generous margins because the machine
is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from fleetcache import LockLost, QuorumNotReached
from fleetcache.locking import AsyncRedlock, Lease, Redlock
from fleetcache.testing import FaultProxy, RedisNode
from fleetcache.testing.nodes import make_client

MakeNodes = Callable[..., list[RedisNode]]

#: Per-node timeout of the timing tests (each client's socket timeout).
NODE_TIMEOUT = 0.25
#: Per-node timeout of the 150-grant fence runs: small, so each grant costs little.
FAST_TIMEOUT = 0.1
#: Slack on top of the expected time of a round (scheduling on a shared 2-core machine).
MARGIN = 0.5
#: Successive grants in the fence runs.
GRANTS = 150


def lock_name() -> str:
    """A lock name no other test uses."""
    return f"redlock-faults:{uuid.uuid4().hex}"


def report(what: str, values: Sequence[float]) -> None:
    """Print measured seconds (shown with ``pytest -s`` / ``-rP``)."""
    shown = ", ".join(f"{v:.3f}" for v in values)
    print(f"MEASURED {what}: [{shown}] s")


def strictly_increasing(fences: Sequence[int | None]) -> bool:
    """True when every fence is an int larger than the one before."""
    ints = [f for f in fences if isinstance(f, int)]
    return len(ints) == len(fences) and all(b > a for a, b in itertools.pairwise(ints))


def node_clients(nodes: Sequence[RedisNode], timeout: float) -> list[redis.Redis]:
    """One sync client per node with ``timeout`` as connect and read timeout, no retries."""
    return [n.client(socket_timeout=timeout, socket_connect_timeout=timeout) for n in nodes]


def close_redlock(lock: Redlock) -> None:
    """Close the connection pools a Redlock opened for its nodes."""
    for client in lock.clients:
        client.connection_pool.disconnect()


@contextlib.contextmanager
def redlock(nodes: Sequence[RedisNode], timeout: float, **kwargs: Any) -> Iterator[Redlock]:
    """A sync Redlock over ``nodes`` with per-node ``timeout``; its pools closed after."""
    lock = Redlock(node_clients(nodes, timeout), **kwargs)
    try:
        yield lock
    finally:
        close_redlock(lock)


async def close_async_redlock(lock: AsyncRedlock) -> None:
    """Close the connection pools an AsyncRedlock opened for its nodes."""
    for client in lock.clients:
        await client.connection_pool.disconnect()


def holders(nodes: Sequence[RedisNode], name: str) -> list[bytes | None]:
    """What each node stores under the lock key ``name`` (a paused node must not be asked)."""
    out: list[bytes | None] = []
    for node in nodes:
        client = node.client()
        try:
            value = client.get(name)
            assert value is None or isinstance(value, bytes)
            out.append(value)
        finally:
            client.close()
    return out


def on_all(nodes: Sequence[RedisNode], action: Callable[[RedisNode], None]) -> None:
    """Run ``action`` on every node at once (kill or restart a pair in parallel)."""
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        for future in [pool.submit(action, n) for n in nodes]:
            future.result()


def kill_and_restart(node: RedisNode) -> None:
    """Crash ``node`` (SIGKILL / docker kill) and start it again, empty, on its port."""
    node.kill()
    node.restart()


def other_pair(rng: random.Random, previous: tuple[int, ...]) -> tuple[int, int]:
    """A random pair of the 5 node indexes, different from ``previous``."""
    while True:
        a, b = sorted(rng.sample(range(5), 2))
        if (a, b) != previous:
            return a, b


# -- 2 of 5 paused: still available, at the cost of one node timeout --------------------


@pytest.mark.slow
def test_two_paused_nodes_cost_about_one_node_timeout_sync(make_nodes: MakeNodes) -> None:
    """Sync Redlock x5 with 2 masters SIGSTOPped/paused: every acquire succeeds within the
    per-node timeout + 0.5 s (2 rounds' worth for a name never used before)."""
    nodes = make_nodes(5)
    name = lock_name()
    with redlock(nodes, NODE_TIMEOUT) as lock:
        assert lock.release(lock.acquire(name, 10.0, 5.0))  # all up: counters now agree
        for i in (1, 3):
            nodes[i].pause()
        times: list[float] = []
        fences: list[int | None] = []
        for _ in range(6):
            start = time.monotonic()
            lease = lock.acquire(name, 10.0, 5.0)
            times.append(time.monotonic() - start)
            fences.append(lease.fence)
            assert lease.valid_until > time.monotonic()
            assert lock.release(lease)
        start = time.monotonic()
        fresh = lock.acquire(lock_name(), 10.0, 5.0)  # diverging counters: write-back round
        fresh_time = time.monotonic() - start
        assert lock.release(fresh)
    report("sync, 2 of 5 paused, acquire", times)
    report("sync, 2 of 5 paused, acquire of a fresh name", [fresh_time])
    assert max(times) < NODE_TIMEOUT + MARGIN
    assert fresh_time < 2 * NODE_TIMEOUT + MARGIN
    assert strictly_increasing(fences)


@pytest.mark.slow
def test_two_paused_nodes_cost_about_one_node_timeout_async(make_nodes: MakeNodes) -> None:
    """AsyncRedlock x5 with 2 masters paused: every acquire succeeds within the per-node
    timeout + 0.5 s (2 rounds' worth for a name never used before)."""
    nodes = make_nodes(5)
    name = lock_name()

    async def run() -> tuple[list[float], float, list[int | None]]:
        clients = [n.async_client(socket_timeout=NODE_TIMEOUT,
                                  socket_connect_timeout=NODE_TIMEOUT) for n in nodes]
        lock = AsyncRedlock(clients)
        try:
            assert await lock.release(await lock.acquire(name, 10.0, 5.0))
            for i in (0, 4):
                nodes[i].pause()
            times: list[float] = []
            fences: list[int | None] = []
            for _ in range(6):
                start = time.monotonic()
                lease = await lock.acquire(name, 10.0, 5.0)
                times.append(time.monotonic() - start)
                fences.append(lease.fence)
                assert lease.valid_until > time.monotonic()
                assert await lock.release(lease)
            start = time.monotonic()
            fresh = await lock.acquire(lock_name(), 10.0, 5.0)
            fresh_time = time.monotonic() - start
            assert await lock.release(fresh)
            return times, fresh_time, fences
        finally:
            await close_async_redlock(lock)
            for client in clients:
                await client.aclose()

    times, fresh_time, fences = asyncio.run(run())
    report("async, 2 of 5 paused, acquire", times)
    report("async, 2 of 5 paused, acquire of a fresh name", [fresh_time])
    assert max(times) < NODE_TIMEOUT + MARGIN
    assert fresh_time < 2 * NODE_TIMEOUT + MARGIN
    assert strictly_increasing(fences)


@pytest.mark.slow
def test_replies_arriving_while_a_hung_node_handshakes_still_count(
    make_nodes: MakeNodes,
) -> None:
    """With db=1 every new connection must SELECT first (a connect-time round trip the
    fan-out cannot skip), so a paused node costs its timeout at each reconnection; the live
    nodes' replies that arrived meanwhile are still read, so acquire and release succeed
    (regression: they were counted as timeouts and the quorum was lost)."""
    nodes = make_nodes(5)
    name = lock_name()
    clients = [n.client(db=1, socket_timeout=NODE_TIMEOUT, socket_connect_timeout=NODE_TIMEOUT)
               for n in nodes]
    lock = Redlock(clients)
    try:
        assert lock.release(lock.acquire(name, 10.0, 5.0))
        for i in (1, 3):
            nodes[i].pause()
        times: list[float] = []
        for _ in range(3):
            start = time.monotonic()
            lease = lock.try_acquire(name, 10.0)
            times.append(time.monotonic() - start)
            assert lease is not None
            assert lock.release(lease)
    finally:
        close_redlock(lock)
    report("sync, db=1, 2 of 5 paused, try_acquire (2 serial SELECT timeouts)", times)
    assert max(times) < 2 * NODE_TIMEOUT + MARGIN


# -- 3 of 5 down: QuorumNotReached within about `wait`, naming the bad nodes -------------

WAIT = 1.0
BAD = (0, 2, 4)
GOOD = (1, 3)
PAST = {"pause": "paused", "kill": "killed"}


def check_quorum_error(err: QuorumNotReached, took: float, fault: str) -> None:
    """The error of a 3-of-5-down acquire: in time, needed 3, granted and errors exact."""
    assert WAIT * 0.8 <= took <= WAIT + NODE_TIMEOUT + MARGIN
    assert err.waited == pytest.approx(took, abs=0.05)
    assert err.needed == 3
    assert err.granted == GOOD
    assert sorted(err.errors) == list(BAD)
    expected: type[Exception] = redis.exceptions.ConnectionError
    if fault == "pause":
        expected = redis.exceptions.TimeoutError
    for i in BAD:
        assert isinstance(err.errors[i], expected), err.errors[i]
        assert f"node {i}: " in str(err)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["pause", "kill"])
def test_three_nodes_down_raise_quorum_not_reached_sync(make_nodes: MakeNodes,
                                                         fault: str) -> None:
    """Sync Redlock x5 with 3 masters paused (or killed): acquire(wait=1) raises
    QuorumNotReached after about 1 s, needed 3, granted by the 2 live nodes, errors naming
    exactly the 3 bad ones, and nothing left held on the live nodes."""
    nodes = make_nodes(5)
    name = lock_name()
    for i in BAD:
        getattr(nodes[i], fault)()
    with redlock(nodes, NODE_TIMEOUT) as lock:
        start = time.monotonic()
        with pytest.raises(QuorumNotReached) as info:
            lock.acquire(name, 10.0, WAIT)
        took = time.monotonic() - start
    report(f"sync, 3 of 5 {PAST[fault]}, QuorumNotReached after", [took])
    check_quorum_error(info.value, took, fault)
    assert holders([nodes[i] for i in GOOD], name) == [None, None]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["pause", "kill"])
def test_three_nodes_down_raise_quorum_not_reached_async(make_nodes: MakeNodes,
                                                          fault: str) -> None:
    """AsyncRedlock x5 with 3 masters paused (or killed): acquire(wait=1) raises
    QuorumNotReached after about 1 s, needed 3, granted by the 2 live nodes, errors naming
    exactly the 3 bad ones, and nothing left held on the live nodes."""
    nodes = make_nodes(5)
    name = lock_name()
    for i in BAD:
        getattr(nodes[i], fault)()

    async def run() -> tuple[QuorumNotReached, float]:
        clients = [n.async_client(socket_timeout=NODE_TIMEOUT,
                                  socket_connect_timeout=NODE_TIMEOUT) for n in nodes]
        lock = AsyncRedlock(clients)
        try:
            start = time.monotonic()
            with pytest.raises(QuorumNotReached) as info:
                await lock.acquire(name, 10.0, WAIT)
            return info.value, time.monotonic() - start
        finally:
            await close_async_redlock(lock)
            for client in clients:
                await client.aclose()

    err, took = asyncio.run(run())
    report(f"async, 3 of 5 {PAST[fault]}, QuorumNotReached after", [took])
    check_quorum_error(err, took, fault)
    assert holders([nodes[i] for i in GOOD], name) == [None, None]


# -- fences across a changing quorum -----------------------------------------------------

FENCE_TTL = 2.0
FENCE_WAIT = 10.0


@pytest.mark.slow
def test_fences_increase_with_a_random_pair_paused_before_each_grant(
    make_nodes: MakeNodes,
) -> None:
    """150 successive grants of one lock, each with a different random pair of the 5
    masters paused (the previous pair resumed first): the fences strictly increase."""
    nodes = make_nodes(5)
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    name = lock_name()
    fences: list[int | None] = []
    times: list[float] = []
    pair: tuple[int, ...] = ()
    started = time.monotonic()
    with redlock(nodes, FAST_TIMEOUT) as lock:
        for _ in range(GRANTS):
            pair = other_pair(rng, pair)
            for i in pair:
                nodes[i].pause()
            start = time.monotonic()
            lease = lock.acquire(name, FENCE_TTL, FENCE_WAIT)
            times.append(time.monotonic() - start)
            fences.append(lease.fence)
            for i in pair:
                nodes[i].resume()
            lock.release(lease)
    total = time.monotonic() - started
    times.sort()
    report(f"{GRANTS} grants with a pair paused: total, acquire p50, p99, max (seed {seed})",
           [total, times[len(times) // 2], times[int(len(times) * 0.99)], times[-1]])
    assert len(fences) == GRANTS
    assert strictly_increasing(fences), f"seed {seed}: {fences}"


@pytest.mark.slow
def test_fences_increase_with_a_random_pair_killed_and_restarted_empty(
    make_nodes: MakeNodes,
) -> None:
    """150 successive grants, each with a different random pair of the 5 masters killed,
    then restarted empty (their counters lost) before the next grant: the fences still
    strictly increase, since a lost counter restarts from the server time in us."""
    nodes = make_nodes(5)
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    name = lock_name()
    fences: list[int | None] = []
    pair: tuple[int, ...] = ()
    started = time.monotonic()
    with redlock(nodes, FAST_TIMEOUT) as lock:
        for _ in range(GRANTS):
            pair = other_pair(rng, pair)
            on_all([nodes[i] for i in pair], RedisNode.kill)
            lease = lock.acquire(name, FENCE_TTL, FENCE_WAIT)
            fences.append(lease.fence)
            on_all([nodes[i] for i in pair], RedisNode.restart)
            lock.release(lease)
    total = time.monotonic() - started
    jumps = sum(1 for a, b in itertools.pairwise(fences)
                if a is not None and b is not None and b - a > 1)
    report(f"{GRANTS} grants with a pair killed and restarted (seed {seed}, "
           f"{jumps} time-based jumps): total", [total])
    assert len(fences) == GRANTS
    assert strictly_increasing(fences), f"seed {seed}: {fences}"
    assert jumps > 0  # the restarted nodes' counters did restart from the clock


# -- a node restarted empty: restart_delay, and the hazard without it --------------------

#: Restart delay of the test below; longer than HELD_TTL, as the docs require.
RESTART_DELAY = 4.0
HELD_TTL = 3.0


@contextlib.contextmanager
def partitioned_client_lock(nodes: Sequence[RedisNode], cut: Sequence[int],
                            **kwargs: Any) -> Iterator[tuple[Redlock, list[FaultProxy]]]:
    """A Redlock whose links to the nodes ``cut`` go through fault proxies, cut at once
    (connections refused): a client partitioned from those masters."""
    proxies: list[FaultProxy] = []
    clients: list[redis.Redis] = []
    try:
        for i, node in enumerate(nodes):
            if i in cut:
                proxy = FaultProxy(node.host, node.port).start()
                proxies.append(proxy)
                proxy.cut()
                clients.append(make_client(proxy.host, proxy.port, socket_timeout=NODE_TIMEOUT,
                                           socket_connect_timeout=NODE_TIMEOUT))
            else:
                clients.extend(node_clients([node], NODE_TIMEOUT))
        lock = Redlock(clients, **kwargs)
        try:
            yield lock, proxies
        finally:
            close_redlock(lock)
    finally:
        for proxy in proxies:
            proxy.stop()


def hold_on_first_three(nodes: Sequence[RedisNode], a: Redlock, name: str,
                        ttl: float) -> Lease:
    """Client A (cut from nodes 3 and 4) acquires ``name``: held on nodes 0, 1, 2 only."""
    lease = a.acquire(name, ttl, 2.0)
    token = lease.token.encode()
    assert holders(nodes, name) == [token, token, token, None, None]
    return lease


@pytest.mark.slow
def test_restarted_node_abstains_for_restart_delay(make_nodes: MakeNodes) -> None:
    """restart_delay=4 s: a lock held on nodes 0-2 survives node 2's crash and empty
    restart, since node 2 abstains (a second client gets only nodes 3, 4 while the first
    lease is valid), and node 2 grants again once the delay is over (fresh nodes, too,
    abstain that long at first use)."""
    nodes = make_nodes(5)
    name = lock_name()
    with redlock(nodes, NODE_TIMEOUT, restart_delay=RESTART_DELAY) as b, \
            partitioned_client_lock(nodes, (3, 4), restart_delay=RESTART_DELAY) as (a, _):
        # Fresh nodes have no boot marker: they all abstain for the delay at first use.
        start = time.monotonic()
        assert b.try_acquire(lock_name(), 1.0) is None
        primed = b.acquire(lock_name(), 1.0, RESTART_DELAY + 5)
        primed_after = time.monotonic() - start
        assert b.release(primed)

        lease_a = hold_on_first_three(nodes, a, name, HELD_TTL)
        kill_and_restart(nodes[2])
        assert holders(nodes, name)[2] is None  # the crash lost node 2's copy of the lock

        first_contact = time.monotonic()
        remaining = lease_a.valid_until - first_contact - 0.1
        assert remaining > 0.3, "the restart took too long to test anything"
        with pytest.raises(QuorumNotReached) as info:
            b.acquire(name, HELD_TTL, remaining)
        assert info.value.granted == (3, 4)  # node 2 abstained: no second grant
        assert not info.value.errors

        assert a.release(lease_a) is False  # held on nodes 0, 1 only now: not a quorum
        for i in (3, 4):
            nodes[i].pause()  # from now on a quorum needs node 2
        other = lock_name()
        lease_b = b.acquire(other, HELD_TTL, RESTART_DELAY + 5)
        rejoined_after = time.monotonic() - first_contact
        assert holders(nodes[:3], other) == [lease_b.token.encode()] * 3
    report(f"restart_delay {RESTART_DELAY} s: fresh nodes granted after", [primed_after])
    report(f"restart_delay {RESTART_DELAY} s: restarted node granted again after "
           "(from first contact)",
           [rejoined_after])
    assert primed_after >= RESTART_DELAY * 0.9
    assert RESTART_DELAY * 0.9 <= rejoined_after <= RESTART_DELAY + 2 * NODE_TIMEOUT + 1.5


@pytest.mark.slow
def test_without_restart_delay_an_empty_restarted_node_grants_a_held_lock_twice(
    make_nodes: MakeNodes,
) -> None:
    """The documented limit (quorum.py) with restart_delay=0: a lock held on nodes 0-2 is
    granted again to a second client via node 2 (restarted empty) and nodes 3, 4 while the
    first lease is still valid; but the lost counter restarts from the server time, so the
    second holder's fence is larger (its fenced writes win) and the first holder's next
    extend raises LockLost."""
    nodes = make_nodes(5)
    name = lock_name()
    with redlock(nodes, NODE_TIMEOUT) as b, \
            partitioned_client_lock(nodes, (3, 4)) as (a, proxies):
        lease_a = hold_on_first_three(nodes, a, name, 10.0)
        kill_and_restart(nodes[2])
        lease_b = b.acquire(name, 10.0, 3.0)  # the double grant
        now = time.monotonic()
        assert lease_a.valid_until > now
        assert lease_b.valid_until > now
        assert lease_a.fence is not None
        assert lease_b.fence is not None
        assert lease_b.fence > lease_a.fence
        a_token, b_token = lease_a.token.encode(), lease_b.token.encode()
        assert holders(nodes, name) == [a_token, a_token, b_token, b_token, b_token]
        for proxy in proxies:
            proxy.heal()
        with pytest.raises(LockLost):
            a.extend(lease_a, 10.0)
        assert b.release(lease_b)
