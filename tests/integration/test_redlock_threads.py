"""Redlock's sync fan-out does not leak connections to threads that ended (hardening item 2).

Each node pool holds at most the user's pool size (redis-py's default: 100); a connection
that a finished thread never gave back is lost to the pool for good, so many short-lived
threads (or watchdogs: one new thread per renewed lease) used to exhaust it.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import redis

from fleetcache.locking import Redlock
from fleetcache.testing.waiting import wait_until

THREADS = 150
BATCH = 5  # threads alive at once in the short-lived-threads test
HOLDS = 120
#: Connections a node may see after sequential hold()s: rounds can overlap from the holder's
#: thread, its watchdog, and the previous hold's watchdog if it has not quite ended yet.
HOLD_LIMIT = 4
CHILD_THREADS = 120


def extra_connections(client: redis.Redis) -> int:
    """Clients connected to the node, minus the one asking."""
    return int(client.info("clients")["connected_clients"]) - 1


def settle(clients: Sequence[redis.Redis], limit: int, what: str) -> None:
    """Wait until no node sees more than ``limit`` connections besides the test's own."""
    try:
        wait_until(
            lambda: max(extra_connections(c) for c in clients) <= limit, timeout=5.0, what=what
        )
    except AssertionError:
        seen = [extra_connections(c) for c in clients]
        raise AssertionError(f"{what}: nodes still see {seen} connections (> {limit})") from None


def run_thread(target: Callable[[], None]) -> None:
    """Run ``target`` in a new thread and wait for the thread to end."""
    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "a worker thread hung"


def pttl_jumped(client: redis.Redis, key: str) -> Callable[[], bool]:
    """A predicate: ``key``'s PTTL rose since the first look (the lease was extended)."""
    lowest = [int(client.pttl(key))]

    def check() -> bool:
        now = int(client.pttl(key))
        if now > lowest[0] + 30:
            return True
        lowest[0] = min(lowest[0], now)
        return False

    return check


def test_short_lived_threads_return_their_connections(make_nodes: Any) -> None:
    """150 short-lived threads acquire+release on one Redlock; node connections stay bounded (hardening item 2)."""  # noqa: E501
    nodes = make_nodes(3)
    clients = [n.client(socket_timeout=0.5) for n in nodes]
    lock = Redlock(clients)
    assert max(extra_connections(c) for c in clients) == 0
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            assert lock.release(lock.acquire(f"short:{i}", 5, 1.0))
        except Exception as exc:
            errors.append(f"thread {i}: {exc!r}")

    for start in range(0, THREADS, BATCH):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(start, start + BATCH)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a worker thread hung"
        assert not errors, errors
        settle(clients, BATCH, f"after {start + BATCH} threads ended")


def test_watchdog_threads_return_their_connections(make_nodes: Any) -> None:
    """120 hold() blocks, each in its own thread, outlive ttl/3: no LockLost, connections bounded (hardening item 2)."""  # noqa: E501
    nodes = make_nodes(3)
    clients = [n.client(socket_timeout=0.5) for n in nodes]
    lock = Redlock(clients)
    probe = nodes[0].client()
    errors: list[str] = []

    for i in range(HOLDS):
        name = f"held:{i}"

        def work(name: str = name) -> None:
            try:
                with lock.hold(name, ttl=0.3, wait=1.0):
                    wait_until(pttl_jumped(probe, name), timeout=5.0,
                               what=f"the watchdog to extend {name}")
            except Exception as exc:
                errors.append(f"{name}: {exc!r}")

        run_thread(work)
        assert not errors, errors
        settle(clients, HOLD_LIMIT, f"after hold {i + 1} and its watchdog ended")
    probe.close()


def test_forked_child_keeps_parent_connections_and_returns_its_own(make_nodes: Any) -> None:
    """A forked child never reuses nor shuts down the parent's connections; its threads return theirs (hardening item 2)."""  # noqa: E501
    nodes = make_nodes(3)
    clients = [n.client(socket_timeout=0.5) for n in nodes]
    lock = Redlock(clients)
    # The parent's main thread and a thread alive across the fork both hold connections.
    lock.release(lock.acquire("parent:main", 5, 1.0))
    used, go, done = threading.Event(), threading.Event(), threading.Event()
    parent_errors: list[str] = []

    def parent_thread() -> None:
        try:
            lock.release(lock.acquire("parent:thread", 5, 1.0))
            used.set()
            go.wait(30)
            assert lock.try_acquire("parent:thread", 5) is not None  # one round, same sockets
        except Exception as exc:
            parent_errors.append(repr(exc))
        finally:
            done.set()

    keeper = threading.Thread(target=parent_thread)
    keeper.start()
    assert used.wait(10)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_fd)
            probes = [n.client() for n in nodes]
            before = [int(p.info("stats")["total_connections_received"]) for p in probes]
            assert lock.release(lock.acquire("child:main", 5, 1.0))
            after = [int(p.info("stats")["total_connections_received"]) for p in probes]
            assert all(a > b for a, b in zip(after, before, strict=True)), "parent socket reused"
            child_errors: list[str] = []

            def child_work(i: int) -> None:
                try:
                    assert lock.release(lock.acquire(f"child:{i}", 5, 0.5))
                except Exception as exc:
                    child_errors.append(f"child thread {i}: {exc!r}")

            for i in range(CHILD_THREADS):
                run_thread(partial(child_work, i))
                assert not child_errors, child_errors[0]
            code = 0
        except BaseException:
            os.write(write_fd, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    # The child is gone; the parent's connections were neither taken nor shut down by it.
    settle(clients, 2, "after the child exited")
    received = [int(c.info("stats")["total_connections_received"]) for c in clients]
    assert lock.try_acquire("parent:main", 5) is not None  # one round on the same sockets
    go.set()
    assert done.wait(10)
    keeper.join(10)
    assert not parent_errors, parent_errors
    assert [int(c.info("stats")["total_connections_received"]) for c in clients] == received
