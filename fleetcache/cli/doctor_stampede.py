"""``doctor``'s fleet checks: a short real stampede across processes, and fencing.

**Stampede.** P spawned processes x T threads each build a :class:`~fleetcache.Cache` on
the deployment (a plain or a cluster client) in the scratch namespace, meet on a
cross-process barrier, sleep until a common start instant (CLOCK_MONOTONIC is system-wide)
and call ``get_or_set`` on one missing key together: one round of ``bench stampede``.  The
bench's worker is not reused: its keys (``fcbench:*``) and lock options are the bench's,
while every key the doctor writes must stay in the scratch namespace (``fc:doctor-*``, the
pattern an ACL grants and the cleanup deletes).  ``compute`` sleeps 0.2 s and INCRs a
counter in Redis, so the upstream calls are counted by Redis.
PASS iff exactly one upstream call and every caller got the same value; the hand-off
latency (caller return - the leader's compute end) is OK up to 50 ms at p99, WARN above.

**Fencing.** A :class:`~fleetcache.locking.FencedLock` lease is granted, claims the entry
and is left to expire on the server; a second holder gets the lease with a higher fence
and claims; the first holder's fenced write must then be refused (``write.lua``), and the
entry hold the second holder's value.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from threading import BrokenBarrierError
from typing import Any

import redis

from fleetcache.cli.common import ms, percentile, reap
from fleetcache.cli.doctor_nodes import (
    FAIL,
    OK,
    SCRATCH_TTL_MS,
    SKIP,
    WARN,
    Line,
    open_client,
)

#: The upstream call's duration (seconds).
UPSTREAM_S = 0.2
#: Hand-off p99 above this is a WARN (seconds).
HANDOFF_OK_S = 0.05
#: Spawning and importing the workers may take this long on a loaded machine (seconds).
STARTUP_TIMEOUT = 60.0
#: Between the release of the barrier and the common start instant (seconds).
START_MARGIN = 0.05


def silence_fleetcache_logs() -> None:
    """The doctor reports what the cache would log (refused commands, a refused
    subscription): keep its log lines out of the report."""
    log = logging.getLogger("fleetcache")
    log.addHandler(logging.NullHandler())
    log.propagate = False


def data_client(url: str, cluster: bool, timeout: float) -> Any:
    """The client a cache of the deployment gets: plain, or ``RedisCluster``."""
    if not cluster:
        return open_client(url, timeout)
    return redis.RedisCluster.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout
    )


@dataclass(frozen=True)
class StampedeSetup:
    """What every worker process needs (picklable)."""

    url: str
    cluster: bool
    namespace: str
    threads: int
    timeout: float
    upstream: float = UPSTREAM_S

    @property
    def counter_key(self) -> str:
        """INCRed by every upstream call."""
        return f"fc:{self.namespace}:calls"

    @property
    def request(self) -> dict[str, str]:
        """The one missing request every caller asks."""
        return {"doctor": "stampede", "namespace": self.namespace}


def worker_main(
    setup: StampedeSetup,
    barrier: Barrier,
    go_at: Synchronized[float],
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """One process: ``setup.threads`` callers of one ``get_or_set``; its stats at the end."""
    from fleetcache import Cache, Policy  # noqa: PLC0415

    silence_fleetcache_logs()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it reaps us
    try:
        client = data_client(setup.url, setup.cluster, setup.timeout)
        cache = Cache(
            client, namespace=setup.namespace, policy=Policy(ttl=60, wait_timeout=20)
        )
        warm = {"doctor": "warm-up", "pid": os.getpid()}
        cache.get_or_set(warm, lambda: "warm")  # subscribed, scripts loaded
    except Exception as exc:
        results.put({"setup_error": f"{type(exc).__name__}: {exc}"})
        barrier.abort()
        return

    def compute(box: list[float]) -> dict[str, Any]:
        start = time.monotonic()
        time.sleep(setup.upstream)
        client.incr(setup.counter_key)
        client.pexpire(setup.counter_key, SCRATCH_TTL_MS)
        done = time.monotonic()
        box.append(done - start)
        return {"nonce": secrets.token_hex(8), "pid": os.getpid(), "done_at": done}

    def caller() -> None:
        cache.get(warm)  # a pooled connection per thread before the start
        try:
            barrier.wait(STARTUP_TIMEOUT)  # everyone is ready: the parent sets go_at
            barrier.wait(STARTUP_TIMEOUT)  # go_at is set
        except BrokenBarrierError:
            return
        delay = go_at.value - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        box: list[float] = []
        start = time.monotonic()
        try:
            value = cache.get_or_set(setup.request, lambda: compute(box))
            end = time.monotonic()
            digest, error, handoff = value["nonce"], None, end - value["done_at"]
        except Exception as exc:
            end = time.monotonic()
            digest, error, handoff = "", f"{type(exc).__name__}: {exc}", None
        results.put({
            "start": start, "latency": end - start,
            "compute": box[0] if box else None, "handoff": handoff,
            "value": digest, "error": error,
        })

    threads = [threading.Thread(target=caller) for _ in range(setup.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    results.put({"stats": cache.stats.snapshot()})
    cache.close()
    client.close()


def _drain(results: multiprocessing.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with contextlib.suppress(queue.Empty):
        while True:
            out.append(results.get(timeout=0.5))
    return out


def run_stampede(setup: StampedeSetup, processes: int, node: str) -> list[Line]:
    """The stampede: a ``stampede`` line (PASS/FAIL) and a ``hand-off`` line (OK/WARN)."""
    callers = processes * setup.threads
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(callers + 1)
    go_at: Synchronized[float] = ctx.Value("d", 0.0)
    results: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
    procs = [
        ctx.Process(target=worker_main, args=(setup, barrier, go_at, results), daemon=True,
                    name=f"fleetcache-doctor-{i}")
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    rows: list[dict[str, Any]] = []
    stats: dict[str, int] = {}
    try:
        try:
            barrier.wait(STARTUP_TIMEOUT)
            go_at.value = time.monotonic() + START_MARGIN
            barrier.wait(STARTUP_TIMEOUT)
        except BrokenBarrierError:
            errors = [r["setup_error"] for r in _drain(results) if "setup_error" in r]
            reason = errors[0] if errors else f"not all ready within {STARTUP_TIMEOUT:g} s"
            return [Line(FAIL, "stampede", node, f"the worker processes did not start: {reason}")]
        reported = 0  # a process's stats may come before another's callers' rows
        while len(rows) < callers or reported < processes:
            msg = results.get(timeout=60)
            if "setup_error" in msg:
                return [Line(FAIL, "stampede", node, f"a worker failed: {msg['setup_error']}")]
            if "stats" in msg:
                reported += 1
                for k, v in msg["stats"].items():
                    stats[k] = stats.get(k, 0) + v
            else:
                rows.append(msg)
    finally:
        barrier.abort()
        reap(procs, timeout=5)
    client = data_client(setup.url, setup.cluster, setup.timeout)
    try:
        calls = int(client.get(setup.counter_key) or 0)
    finally:
        client.close()
    return stampede_lines(summarise(calls, rows), processes, setup, node, stats)


def summarise(calls: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The stampede's numbers from the callers' reports and the Redis counter."""
    handoffs = [row["handoff"] for row in rows if row["handoff"] is not None]
    starts = [row["start"] for row in rows]
    errors = [row["error"] for row in rows if row["error"]]
    return {
        "upstream_calls": calls,
        "callers": len(rows),
        "errors": errors,
        "equal_values": len({row["value"] for row in rows}) == 1 and not errors,
        "handoff_p50_s": percentile(handoffs, 50),
        "handoff_p99_s": percentile(handoffs, 99),
        "handoff_max_s": max(handoffs, default=float("nan")),
        "start_skew_s": max(starts, default=0.0) - min(starts, default=0.0),
    }


def stampede_lines(
    summary: dict[str, Any], processes: int, setup: StampedeSetup, node: str,
    stats: dict[str, int],
) -> list[Line]:
    """The verdict on one stampede's numbers."""
    calls, callers = summary["upstream_calls"], summary["callers"]
    shape = f"{callers} callers ({processes} processes x {setup.threads} threads)"
    data = dict(summary)
    data["followed"] = stats.get("followed", 0)
    data["coalesced"] = stats.get("coalesced", 0)
    problems = []
    if calls != 1:
        problems.append(f"{calls} upstream calls for one key (expected exactly 1)")
    if summary["errors"]:
        problems.append(f"{len(summary['errors'])} caller(s) failed: {summary['errors'][0]}")
    elif not summary["equal_values"]:
        problems.append("the callers got different values")
    if problems:
        return [Line(FAIL, "stampede", node, f"{shape}: " + "; ".join(problems), data=data),
                Line(SKIP, "hand-off", node, "not measured: the stampede failed")]
    line = Line(
        OK, "stampede", node,
        f"{shape} on one missing key: 1 upstream call, every caller got the same value "
        f"({data['followed']} served from another process, {data['coalesced']} "
        "coalesced in-process)",
        data=data,
    )
    p50, p99 = summary["handoff_p50_s"], summary["handoff_p99_s"]
    handoff = f"hand-off p50 {ms(p50)}, p99 {ms(p99)} (caller return - leader compute end)"
    if not p99 <= HANDOFF_OK_S:  # NaN (no hand-off measured) is not OK either
        status = WARN
        handoff += (f": above {ms(HANDOFF_OK_S, 0)}; followers waited for a poll rather "
                    "than a pub/sub wake-up, or the machine is overloaded")
    else:
        status = OK
        handoff += f" <= {ms(HANDOFF_OK_S, 0)}"
    return [line, Line(status, "hand-off", node, handoff)]


def check_fencing(client: Any, namespace: str, tag: str, node: str) -> list[Line]:
    """A holder whose lease expired must not write once a newer holder claimed the entry."""
    from fleetcache.core._sync.store import REFUSED, Store  # noqa: PLC0415
    from fleetcache.core.keys import KeyLayout  # noqa: PLC0415
    from fleetcache.locking import FencedLock  # noqa: PLC0415

    layout = KeyLayout(namespace)
    keys = layout.entry(tag, 2)
    store = Store(client, layout, SCRATCH_TTL_MS)
    lock = FencedLock(client, counter_ttl=SCRATCH_TTL_MS / 1000)
    first = lock.try_acquire(keys.lock, 0.1)
    if first is None:
        return [Line(FAIL, "fencing", node, f"a free lease ({keys.lock}) was not granted")]
    store.claim(keys, first.fence, SCRATCH_TTL_MS)
    deadline = time.monotonic() + 2.0
    while client.pttl(keys.lock) != -2 and time.monotonic() < deadline:  # -2: no key
        time.sleep(0.02)
    second = lock.try_acquire(keys.lock, 10.0)
    if second is None:
        return [Line(FAIL, "fencing", node, "a lease that expired (TTL 0.1 s) was not granted "
                     "again within 2 s: keys do not expire on time")]
    try:
        if first.fence is None or second.fence is None or second.fence <= first.fence:
            return [Line(FAIL, "fencing", node,
                         f"the second lease's fence {second.fence} is not above the first's "
                         f"{first.fence}")]
        store.claim(keys, second.fence, SCRATCH_TTL_MS)
        stale = store.write(keys, b"first", SCRATCH_TTL_MS, first.fence)
        fresh = store.write(keys, b"second", SCRATCH_TTL_MS, second.fence)
        stored = client.get(keys.value)
    finally:
        lock.release(second)
    if stale != REFUSED:
        return [Line(FAIL, "fencing", node,
                     f"the expired holder's write (fence {first.fence}) was accepted after a "
                     f"newer holder (fence {second.fence}) claimed the entry")]
    if fresh == REFUSED or stored != b"second":
        return [Line(FAIL, "fencing", node,
                     f"the newer holder's write was lost (stored {stored!r})")]
    return [Line(OK, "fencing", node,
                 f"a lease expired (fence {first.fence}), a new holder got fence "
                 f"{second.fence} and claimed: the expired holder's write was refused")]
