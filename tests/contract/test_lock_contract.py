"""The contract every lock backend honours (ARCHITECTURE §5)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid

import pytest

from fleetcache import LockLost, LockNotAcquired
from fleetcache.locking import Lease
from fleetcache.testing.waiting import wait_until

from .conftest import Backend


def name() -> str:
    """A lock name no other test uses."""
    return f"contract:{uuid.uuid4().hex}"


def test_second_acquire_refused_while_held(backend: Backend) -> None:
    """While a lease is held, try_acquire of the same name returns None."""
    n = name()
    lease = backend.lock.try_acquire(n, 10)
    assert lease is not None
    assert lease.name == n
    assert backend.lock.try_acquire(n, 10) is None
    assert backend.lock.release(lease)
    assert backend.lock.try_acquire(n, 10) is not None


def test_non_owner_release_and_extend_refused(backend: Backend) -> None:
    """A lease with the wrong token can neither release nor extend; the owner still holds."""
    n = name()
    lease = backend.lock.try_acquire(n, 10)
    assert lease is not None
    forged = Lease(n, uuid.uuid4().hex, lease.fence, lease.valid_until)
    assert backend.lock.release(forged) is False
    with pytest.raises(LockLost):
        backend.lock.extend(forged, 10)
    assert backend.lock.try_acquire(n, 10) is None
    assert backend.lock.release(lease)


def test_lease_expires(backend: Backend) -> None:
    """An unreleased lease expires after its TTL and the name can be taken again."""
    n = name()
    start = time.monotonic()
    lease = backend.lock.try_acquire(n, backend.ttl)
    assert lease is not None
    assert lease.valid_until <= start + backend.ttl
    wait_until(lambda: backend.lock.try_acquire(n, 10) is not None, backend.ttl + 3,
               "the lease to expire")
    assert time.monotonic() - start >= backend.ttl * 0.9


def test_release_after_expiry_returns_false(backend: Backend) -> None:
    """Releasing an expired lease returns False and raises nothing."""
    n = name()
    lease = backend.lock.try_acquire(n, backend.ttl)
    assert lease is not None
    wait_until(lambda: backend.lock.try_acquire(n, 10) is not None, backend.ttl + 3,
               "expiry and a new holder")
    assert backend.lock.release(lease) is False


def test_extend_keeps_the_lease_alive(backend: Backend) -> None:
    """extend() resets the TTL so the lease outlives its first TTL."""
    n = name()
    lease = backend.lock.try_acquire(n, backend.ttl)
    assert lease is not None
    deadline = time.monotonic() + backend.ttl * 2.5
    while time.monotonic() < deadline:
        lease = backend.lock.extend(lease, backend.ttl)
        assert backend.lock.try_acquire(n, 10) is None
        time.sleep(backend.ttl / 4)
    assert backend.lock.release(lease)


def test_hold_renews_while_the_block_runs(backend: Backend) -> None:
    """hold() keeps the lease through a block three TTLs long, then releases it."""
    n = name()
    with backend.lock.hold(n, backend.ttl, wait=1):
        deadline = time.monotonic() + backend.ttl * 3
        while time.monotonic() < deadline:
            assert backend.lock.try_acquire(n, 10) is None
            time.sleep(backend.ttl / 5)
    lease = backend.lock.try_acquire(n, 10)
    assert lease is not None
    backend.lock.release(lease)


def test_hold_reports_a_lost_lease(backend: Backend) -> None:
    """If the lock is taken under a hold() block, LockLost is raised on exit, also when the
    block ends at once, before a renewal could notice (release() finds the lease gone)."""
    n = name()
    with pytest.raises(LockLost), backend.lock.hold(n, backend.ttl, wait=1):  # noqa: PT012
        backend.delete_matching(
            f"*{n}*", keep=lambda k: k.endswith(b":fence") or k.startswith(b"lock-signal"))
        other = backend.lock.try_acquire(n, 30)
        assert other is not None
    assert backend.lock.release(other)  # the thief's lease was left alone


class LostLeaseSignal(logging.Handler):
    """Sets :attr:`event` when the watchdog logs that the lease of ``lock_name`` was lost."""

    def __init__(self, lock_name: str) -> None:
        super().__init__(logging.WARNING)
        self.lock_name = lock_name
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "lease %s lost while held" and record.args == (self.lock_name,):
            self.event.set()


def test_watchdog_detects_a_lost_lease_while_the_block_runs(backend: Backend) -> None:
    """When the lock is stolen under a hold() block, the watchdog's next renewal finds it
    lost (and says so) while the block still runs, and LockLost is raised on exit."""
    n = name()
    signal = LostLeaseSignal(n)
    logger = logging.getLogger("fleetcache.watchdog")
    old_level = logger.level
    logger.addHandler(signal)
    logger.setLevel(logging.WARNING)
    other: Lease | None = None
    try:
        with pytest.raises(LockLost), backend.lock.hold(n, backend.ttl, wait=1):  # noqa: PT012
            assert not signal.event.is_set()
            backend.delete_matching(
                f"*{n}*", keep=lambda k: k.endswith(b":fence") or k.startswith(b"lock-signal"))
            other = backend.lock.try_acquire(n, 30)
            assert other is not None
            # A renewal comes every ttl/3: the watchdog must notice within a few of them.
            assert signal.event.wait(backend.ttl * 3 + 5), "the watchdog never saw the loss"
        # The thief's lease survived the hold's exit: the block's release did not touch it.
        assert backend.lock.try_acquire(n, 10) is None
    finally:
        logger.removeHandler(signal)
        logger.setLevel(old_level)
        if other is not None:
            backend.lock.release(other)


def test_tokens_are_long_and_unique(backend: Backend) -> None:
    """Tokens carry >= 16 random bytes (32 hex chars) and never repeat."""
    tokens = set()
    for _ in range(50):
        lease = backend.lock.try_acquire(name(), 5)
        assert lease is not None
        assert len(bytes.fromhex(lease.token)) >= 16
        tokens.add(lease.token)
        backend.lock.release(lease)
    assert len(tokens) == 50


def test_fences_strictly_increase(backend: Backend) -> None:
    """Successive grants carry strictly increasing fences (None where not provided),
    also after the fence counters are lost (with Redlock's boot markers: a data loss)."""
    n = name()
    fences = []
    for i in range(40):
        if i == 20:
            backend.delete_matching(f"*{n}*:fence", keep=lambda k: False)
            backend.delete_matching("fleetcache:redlock:boot", keep=lambda k: False)
        lease = backend.lock.acquire(n, 5, wait=1)
        fences.append(lease.fence)
        assert backend.lock.release(lease)
    if not backend.fenced:
        assert fences == [None] * 40
        return
    assert all(isinstance(f, int) for f in fences)
    assert all(b > a for a, b in itertools.pairwise(fences))


def test_acquire_times_out(backend: Backend) -> None:
    """acquire() on a held name raises LockNotAcquired naming it after about `wait`."""
    n = name()
    held = backend.lock.try_acquire(n, 30)
    assert held is not None
    start = time.monotonic()
    with pytest.raises(LockNotAcquired) as info:
        backend.lock.acquire(n, 5, wait=0.3)
    elapsed = time.monotonic() - start
    assert info.value.name == n
    assert 0.3 - 0.11 <= info.value.waited <= 2.0  # gives up when the next back-off would pass wait
    assert elapsed < 2.5
    backend.lock.release(held)


def test_acquire_waits_for_release(backend: Backend) -> None:
    """acquire() succeeds once the holder releases within the wait."""
    n = name()
    held = backend.lock.try_acquire(n, 30)
    assert held is not None
    timer = threading.Timer(0.2, backend.lock.release, args=(held,))
    timer.start()
    lease = backend.lock.acquire(n, 5, wait=5)
    timer.join()
    assert lease.token != held.token
    backend.lock.release(lease)


def test_mutual_exclusion_under_thread_contention(backend: Backend) -> None:
    """8 threads hammering one name never hold it together (occupancy counted in Redis)."""
    n = name()
    occ = f"{n}:occupancy"
    violations: list[int] = []
    grants: list[int] = []
    stop = time.monotonic() + 1.5
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        while time.monotonic() < stop:
            lease = backend.lock.acquire(n, 5, wait=10)
            if backend.client.incr(occ) != 1:
                violations.append(1)
            grants.append(1)
            backend.client.decr(occ)
            backend.lock.release(lease)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert violations == []
    assert len(grants) >= 8


@pytest.mark.parametrize(("ttl", "exc"), [(0, ValueError), (-1, ValueError),
                                          (float("nan"), ValueError), ("1", TypeError)])
def test_bad_ttl_raises_at_once(backend: Backend, ttl: object, exc: type[Exception]) -> None:
    """A bad TTL raises before anything is written."""
    n = name()
    with pytest.raises(exc):
        backend.lock.try_acquire(n, ttl)
    assert list(backend.client.scan_iter(f"*{n}*")) == []


def test_bad_name_and_lease_raise(backend: Backend) -> None:
    """An empty or non-str name, or a non-Lease, raises at once."""
    with pytest.raises(ValueError, match="empty"):
        backend.lock.try_acquire("", 1)
    with pytest.raises(TypeError):
        backend.lock.try_acquire(5, 1)
    with pytest.raises(TypeError):
        backend.lock.release("token")
