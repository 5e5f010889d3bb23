"""The process side of ``bench lock``'s contended part: hammer one lock name for S seconds.

Every worker process waits on a cross-process barrier, then, until its deadline:
``acquire(name, ttl, wait)``; while holding, ``INCR`` an occupancy counter in Redis (any
value other than 1 means two holders at once: a violation), ``RPUSH`` the lease's fence to
a list (so the list is in holding order and the coordinator can check that fences strictly
increase), ``DECR``; then ``release``.  It reports its acquisitions, wait times, violations,
give-ups (``LockNotAcquired`` after ``wait``), releases that found the lease gone, errors.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any

import redis

from fleetcache.cli.common import connect, percentile, reap
from fleetcache.cli.locks import SYNC_LOCKS, sync_clients
from fleetcache.errors import FleetcacheError, LockNotAcquired


@dataclass(frozen=True)
class Contended:
    """What every contended worker needs (picklable)."""

    backend: str  # a key of SYNC_LOCKS
    url: str  # the node holding the occupancy counter and the fence list
    lock_urls: tuple[str, ...]  # the lock's nodes
    name: str  # the lock name every worker wants
    seconds: float
    ttl: float
    wait: float
    hold: float

    @property
    def occupancy_key(self) -> str:
        """INCRed by each holder on entry, DECRed on exit: 1 while held by one holder."""
        return self.name + ":occupancy"

    @property
    def fences_key(self) -> str:
        """The fences of successive holders, in holding order (RPUSHed while holding)."""
        return self.name + ":fences"


def contend(setup: Contended, barrier: Barrier, results: multiprocessing.Queue[Any]) -> None:
    """One worker process: acquire/hold/release ``setup.name`` until the deadline."""
    r = connect(setup.url)
    lock = SYNC_LOCKS[setup.backend](sync_clients(setup.lock_urls))
    r.ping()
    acquisitions = violations = give_ups = lost = errors = 0
    waits: list[float] = []
    last_error = ""
    barrier.wait(timeout=120)
    deadline = time.monotonic() + setup.seconds
    while time.monotonic() < deadline:
        start = time.monotonic()
        try:
            lease = lock.acquire(setup.name, setup.ttl, setup.wait)
        except LockNotAcquired:
            give_ups += 1
            continue
        except FleetcacheError as exc:
            errors += 1
            last_error = f"{type(exc).__name__}: {exc}"
            continue
        waits.append(time.monotonic() - start)
        acquisitions += 1
        try:
            if int(r.incr(setup.occupancy_key)) != 1:
                violations += 1
            if setup.hold > 0:
                time.sleep(setup.hold)
            pipe = r.pipeline(transaction=False)
            pipe.rpush(setup.fences_key, -1 if lease.fence is None else lease.fence)
            pipe.decr(setup.occupancy_key)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:  # bookkeeping failed: count, go on
            errors += 1
            last_error = f"bookkeeping: {type(exc).__name__}: {exc}"
        finally:
            try:
                lost += not lock.release(lease)
            except FleetcacheError as exc:
                errors += 1
                last_error = f"{type(exc).__name__}: {exc}"
    results.put(
        {
            "acquisitions": acquisitions,
            "waits": waits,
            "violations": violations,
            "give_ups": give_ups,
            "lost_releases": lost,
            "errors": errors,
            "last_error": last_error,
        }
    )
    r.close()


def fence_inversions(fences: list[int]) -> int:
    """How many successive holders got a fence not larger than the previous holder's."""
    return sum(1 for a, b in itertools.pairwise(fences) if b <= a)


def run_contended(setup: Contended, processes: int) -> dict[str, Any]:
    """Spawn ``processes`` workers on ``setup``, collect and summarise their reports.

    The fence list and occupancy counter are read from ``setup.url`` afterwards; fences are
    checked only for backends that hand them out (not ``setnx``).
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results: multiprocessing.Queue[Any] = ctx.Queue()
    procs = [
        ctx.Process(
            target=contend,
            args=(setup, barrier, results),
            daemon=True,
            name=f"fleetcache-lock-{setup.backend}-{i}",
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    rows: list[dict[str, Any]] = []
    try:
        barrier.wait(timeout=120)
        limit = setup.seconds + setup.wait + setup.ttl + 60
        rows = [results.get(timeout=limit) for _ in procs]
    finally:
        reap(procs)
    r = connect(setup.url)
    try:
        fences = [int(x) for x in r.lrange(setup.fences_key, 0, -1)]
        occupancy = int(r.get(setup.occupancy_key) or 0)
    finally:
        r.close()
    waits = [w for row in rows for w in row["waits"]]
    acquisitions = sum(row["acquisitions"] for row in rows)
    fenced = setup.backend != "setnx"
    inversions = fence_inversions(fences) if fenced else None
    return {
        "backend": setup.backend,
        "nodes": len(setup.lock_urls),
        "processes": processes,
        "seconds": setup.seconds,
        "acquisitions": acquisitions,
        "acquisitions_per_s": acquisitions / setup.seconds,
        "wait_p50_s": percentile(waits, 50),
        "wait_p99_s": percentile(waits, 99),
        "wait_max_s": max(waits, default=float("nan")),
        "per_process": [row["acquisitions"] for row in rows],
        "violations": sum(row["violations"] for row in rows),
        "give_ups": sum(row["give_ups"] for row in rows),
        "lost_releases": sum(row["lost_releases"] for row in rows),
        "errors": sum(row["errors"] for row in rows),
        "last_error": next((row["last_error"] for row in rows if row["last_error"]), ""),
        "fences_recorded": len(fences),
        "fence_inversions": inversions,
        "fences_increasing": None if inversions is None else inversions == 0,
        "occupancy_after": occupancy,
    }
