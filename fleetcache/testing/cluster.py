"""A real Redis Cluster for tests: `redis_cluster()` starts one, `RedisClusterHandle` drives it.

```python
from fleetcache.testing import redis_cluster

with redis_cluster(masters=3, replicas=1) as cluster:  # 6 nodes on free 127.0.0.1 ports
    rc = cluster.client()                   # redis.cluster.RedisCluster: 2 s timeouts, no retries
    rc.set("k", "v")
    master = cluster.master_of("k")         # the RedisNode serving k's slot now
    master.kill()                           # SIGKILL / docker kill
    promoted = cluster.failover_wait(master)  # a replica of it took over; cluster_state:ok
    cluster.heal()                          # dead nodes restarted (empty) and back in the cluster
```

Nodes come from the providers of `redis_nodes` (`kind`, else `FLEETCACHE_REDIS`), each with
`--cluster-enabled yes`, its own config file, a short `--cluster-node-timeout` (a failover
takes ~1-3 s) and no persistence, on a port whose bus port (port + 10000) was free too. The
cluster is formed from Python with redis-py -- CLUSTER MEET, ADDSLOTSRANGE (ADDSLOTS batches
on Redis 6.2), REPLICATE -- so no redis-cli is needed; every node is stopped at exit.

A cluster that outlives the process (what `scripts/cluster.sh` uses without redis-cli):

    python -m fleetcache.testing.cluster up --ports-from 7000   # + Redlock masters 7100-7104
    python -m fleetcache.testing.cluster status
    python -m fleetcache.testing.cluster down                   # by the PID files it wrote
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import redis
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.backoff
import redis.cluster
import redis.crc
import redis.retry

from fleetcache.testing.nodes import (
    BASE_ARGS,
    LOOPBACK,
    NodeError,
    NodeProvider,
    RedisNode,
    find_redis_server,
    free_port,
    is_address_in_use,
    make_client,
    port_is_open,
    wait_port_closed,
)

SLOTS = 16384
BUS_OFFSET = 10000
_ADMIN_TIMEOUT = 1.0
_PORT_ATTEMPTS = 5
_ADDSLOTS_BATCH = 1024
_UNHEALTHY = frozenset({"fail", "fail?", "handshake", "noaddr"})

#: What is still wrong, or None.
Problem: TypeAlias = str | None


@dataclass(frozen=True)
class NodeEntry:
    """One line of `CLUSTER NODES`: a node as some node of the cluster sees it."""

    id: str
    host: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...]  # inclusive ranges

    @property
    def is_master(self) -> bool:
        """Flagged master (it may still hold no slot)."""
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        """Flagged fail / fail? / handshake / noaddr."""
        return bool(self.flags & _UNHEALTHY)

    @property
    def slot_count(self) -> int:
        """How many slots it serves."""
        return sum(end - start + 1 for start, end in self.slots)

    def serves(self, slot: int) -> bool:
        """True when `slot` is in one of its ranges."""
        return any(start <= slot <= end for start, end in self.slots)


def parse_cluster_nodes(text: str) -> list[NodeEntry]:
    """Parse a `CLUSTER NODES` reply (migrating/importing `[...]` slot fields are skipped)."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        host, _, port = fields[1].split(",")[0].split("@")[0].rpartition(":")
        slots = []
        for item in fields[8:]:
            if item.startswith("["):
                continue
            start, _, end = item.partition("-")
            slots.append((int(start), int(end or start)))
        entries.append(
            NodeEntry(
                id=fields[0],
                host=host,
                port=int(port or 0),
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                connected=fields[7] == "connected",
                slots=tuple(sorted(slots)),
            )
        )
    return entries


def parse_info(text: str) -> dict[str, str]:
    """Parse `key:value` lines (`CLUSTER INFO`)."""
    pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """16384 slots split evenly into `masters` inclusive ranges."""
    return [(i * SLOTS // masters, (i + 1) * SLOTS // masters - 1) for i in range(masters)]


def key_slot(key: str | bytes) -> int:
    """The cluster slot of `key` (hash tags honoured)."""
    return int(redis.crc.key_slot(key.encode() if isinstance(key, str) else key))


def cluster_args(node_timeout_ms: int, config_file: str) -> list[str]:
    """Flags of a cluster node on 127.0.0.1, failing over fast (used with BASE_ARGS)."""
    options = {
        "cluster-enabled": "yes",
        "cluster-config-file": config_file,
        "cluster-node-timeout": str(node_timeout_ms),
        "cluster-announce-ip": LOOPBACK,
        # A replica may take over however long ago it last heard from its master.
        "cluster-replica-validity-factor": "0",
        # Replicas sync at once (7.0 waits 5 s by default), never through the disk.
        "repl-diskless-sync": "yes",
        "repl-diskless-sync-delay": "0",
        "repl-diskless-load": "on-empty-db",
    }
    return [arg for name, value in options.items() for arg in (f"--{name}", value)]


# -- talking to nodes by port (every node is on 127.0.0.1) -------------------------------


def _call(port: int, *args: Any) -> Any:
    """One command on a short-lived connection, 1 s timeouts, replies decoded."""
    client = make_client(
        LOOPBACK,
        port,
        socket_timeout=_ADMIN_TIMEOUT,
        socket_connect_timeout=_ADMIN_TIMEOUT,
        decode_responses=True,
    )
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def _entries(port: int) -> list[NodeEntry]:
    return parse_cluster_nodes(str(_call(port, "CLUSTER", "NODES")))


def _state(port: int) -> str:
    return parse_info(str(_call(port, "CLUSTER", "INFO"))).get("cluster_state", "?")


def _replication(port: int) -> dict[str, Any]:
    return dict(_call(port, "INFO", "replication"))


def add_slots(port: int, ranges: Sequence[tuple[int, int]]) -> None:
    """Assign slot ranges to the node: ADDSLOTSRANGE (7.0+), else ADDSLOTS in batches."""
    flat = [bound for pair in ranges for bound in pair]
    try:
        _call(port, "CLUSTER", "ADDSLOTSRANGE", *flat)
        return
    except redis.ResponseError as exc:
        if "subcommand" not in str(exc).lower():
            raise
    slots = [slot for start, end in ranges for slot in range(start, end + 1)]
    for i in range(0, len(slots), _ADDSLOTS_BATCH):
        _call(port, "CLUSTER", "ADDSLOTS", *slots[i : i + _ADDSLOTS_BATCH])


def _wait(check: Callable[[], Problem], deadline: float, what: str) -> None:
    """Poll `check` every 50 ms until it reports no problem; NodeError at the deadline."""
    while True:
        try:
            problem = check()
        except (redis.RedisError, OSError, NodeError) as exc:
            problem = repr(exc)
        if problem is None:
            return
        if time.monotonic() > deadline:
            raise NodeError(f"timed out waiting for {what}: {problem}")
        time.sleep(0.05)


def _acquaintance_problem(ports: Collection[int]) -> Problem:
    """None when every node knows every other, linked up and past the handshake."""
    for port in ports:
        seen = {e.port for e in _entries(port) if not e.failed and e.connected}
        if not set(ports) <= seen:
            return f"{port} does not know {sorted(set(ports) - seen)} yet"
    return None


def health_problem(ports: Collection[int]) -> Problem:
    """None when each node says cluster_state:ok, sees all 16384 slots served by masters
    among `ports`, and all of them agree on who serves what and who replicates whom."""
    views = {}
    for port in ports:
        state, entries = _state(port), _entries(port)
        if state != "ok":
            return f"{port}: cluster_state:{state}"
        covered = sum(
            e.slot_count for e in entries if e.is_master and not e.failed and e.port in ports
        )
        if covered != SLOTS:
            return f"{port}: {covered} of {SLOTS} slots served by reachable masters"
        views[port] = frozenset(
            (e.id, e.port, e.is_master, e.master_id, e.slots) for e in entries if not e.failed
        )
    if len(set(views.values())) > 1:
        return "the nodes do not agree on the cluster's configuration yet"
    return None


def replication_problem(ports: Collection[int]) -> Problem:
    """None when each replica among `ports` is linked up and its master lists it online."""
    for port in ports:
        info = _replication(port)
        if info.get("role") != "slave":
            continue
        if info.get("master_link_status") != "up":
            return f"{port}: link to its master is {info.get('master_link_status')}"
        master = _replication(int(info["master_port"]))
        if not any(
            isinstance(v, dict) and int(v.get("port", 0)) == port and v.get("state") == "online"
            for v in master.values()
        ):
            return f"{port}: not online at its master {info['master_port']} yet"
    return None


def form_cluster(ports: Sequence[int], masters: int, replicas: int, timeout: float = 30.0) -> None:
    """Make one cluster of empty cluster-enabled nodes: the first `masters` ports share the
    slots, the others replicate them in turn; return once it is healthy and replicated."""
    if len(ports) != masters * (1 + replicas):
        raise ValueError(f"{len(ports)} ports for {masters} masters x {replicas} replicas")
    deadline = time.monotonic() + timeout
    ids = [str(_call(port, "CLUSTER", "MYID")) for port in ports]
    for epoch, port in enumerate(ports, 1):  # distinct epochs: no collision to resolve
        with contextlib.suppress(redis.ResponseError):
            _call(port, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
    for port, slot_range in zip(ports, slot_ranges(masters), strict=False):
        add_slots(port, [slot_range])
    for i, port in enumerate(ports):  # every pair meets: no waiting for gossip to spread
        for other in ports[i + 1 :]:
            _call(port, "CLUSTER", "MEET", LOOPBACK, other)
    _wait(lambda: _acquaintance_problem(ports), deadline, "every node to know every other")
    for i, port in enumerate(ports[masters:]):
        _call(port, "CLUSTER", "REPLICATE", ids[i % masters])
    _wait(lambda: health_problem(ports), deadline, "cluster_state:ok on every node")
    _wait(lambda: replication_problem(ports), deadline, "replicas online at their masters")


# -- starting nodes on a provider ----------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (for outgoing connections)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def cluster_port(taken: Collection[int] = ()) -> int:
    """A free port whose bus port (+10000) is free too, clear of `taken` and their buses.

    Both lie below the ephemeral range when there is room (e.g. 20000-22767, bus
    30000-32767): no outgoing connection can then take them, so a node restarts on its
    port reliably. Otherwise any free port whose bus port is free.
    """
    top = _ephemeral_low() - BUS_OFFSET - 1
    for attempt in range(500):
        port = random.randint(20000, top) if top > 20000 and attempt < 400 else free_port()
        bus = port + BUS_OFFSET
        if bus > 65535 or {port, bus, port - BUS_OFFSET} & set(taken):
            continue
        if _bindable(port) and _bindable(bus):
            return port
    raise NodeError("found no free port whose bus port (+10000) was free too")


def _new_node(provider: NodeProvider, port: int, args: Sequence[str]) -> RedisNode:
    from fleetcache.testing.containers import ContainerNode, ContainerProvider  # noqa: PLC0415
    from fleetcache.testing.local import LocalNode, LocalProvider  # noqa: PLC0415

    if isinstance(provider, ContainerProvider):
        return ContainerNode(provider.image, port, args)
    if isinstance(provider, LocalProvider):
        return LocalNode(provider.binary, provider.workdir, port, args)
    raise TypeError(f"cannot start cluster nodes on {type(provider).__name__}")


def start_cluster_nodes(
    provider: NodeProvider, count: int, node_timeout_ms: int = 1000
) -> list[RedisNode]:
    """Start `count` empty cluster-enabled nodes in parallel; the provider stops them."""
    taken: set[int] = set()
    lock = threading.Lock()

    def start_one(_: int) -> RedisNode:
        error: NodeError | None = None
        for _attempt in range(_PORT_ATTEMPTS):
            with lock:
                port = cluster_port(taken)
                taken.update((port, port + BUS_OFFSET))
            # Relative: in the local provider's temp dir, or in the container's own /data.
            args = (*BASE_ARGS, *cluster_args(node_timeout_ms, f"nodes-{port}.conf"))
            node = _new_node(provider, port, args)
            try:
                node._launch()
            except NodeError as exc:
                if not is_address_in_use(str(exc)):
                    raise
                error = exc  # port or bus port taken since we looked: another port
                continue
            with provider._lock:
                provider._nodes.append(node)
            return node
        raise NodeError(f"no free port pair after {_PORT_ATTEMPTS} attempts") from error

    with ThreadPoolExecutor(max_workers=min(count, 6), thread_name_prefix="cluster") as pool:
        futures = [pool.submit(start_one, i) for i in range(count)]
    started = [f.result() for f in futures if f.exception() is None]
    for future in futures:
        if future.exception() is not None:
            _stop_all(started)
            future.result()  # raises
    return started


def _stop_all(nodes: Sequence[RedisNode]) -> None:
    """Stop each node (a no-op for stopped ones), even when some fail to stop."""
    for node in nodes:
        with contextlib.suppress(Exception):
            node.stop()


# -- the handle ----------------------------------------------------------------------------


class RedisClusterHandle:
    """A running Redis Cluster of `RedisNode`s: clients, current roles, health and failover.

    Roles are read from `CLUSTER NODES` of a live node on each call: after a failover
    `masters()` and `master_of()` tell the new truth.
    """

    def __init__(
        self, nodes: Sequence[RedisNode], *, masters: int, replicas: int, node_timeout_ms: int
    ) -> None:
        self.nodes: list[RedisNode] = list(nodes)
        self.shape = (masters, replicas)
        self.node_timeout_ms = node_timeout_ms
        self._replica_of: dict[str, str] = {}  # node id -> master it was last seen replicating
        self._port_id: dict[int, str] = {}  # port -> id last seen there (a restart may renew it)

    def __repr__(self) -> str:
        return f"<RedisClusterHandle {[n.port for n in self.nodes]}>"

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT` of the first node (a cluster client finds the rest)."""
        return f"redis://{self.nodes[0].host}:{self.nodes[0].port}"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every node."""
        return [(node.host, node.port) for node in self.nodes]

    @property
    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """Every node, for `redis.cluster.RedisCluster(startup_nodes=...)`."""
        return [redis.cluster.ClusterNode(host, port) for host, port in self.addresses]

    def client(self, **overrides: Any) -> redis.cluster.RedisCluster:
        """A sync cluster client: socket timeouts 2 s, no retries, unless overridden."""
        options: dict[str, Any] = {
            "startup_nodes": self.startup_nodes,
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        }
        options.update(overrides)
        return redis.cluster.RedisCluster(**options)

    def async_client(self, **overrides: Any) -> redis.asyncio.cluster.RedisCluster:
        """An asyncio cluster client with the same bounded defaults as `client()`."""
        options: dict[str, Any] = {
            "startup_nodes": [redis.asyncio.cluster.ClusterNode(h, p) for h, p in self.addresses],
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            "retry": redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0),
        }
        options.update(overrides)
        return redis.asyncio.cluster.RedisCluster(**options)

    # -- roles ---------------------------------------------------------------------------

    def live_nodes(self) -> list[RedisNode]:
        """Nodes that run and are not paused."""
        return [node for node in self.nodes if node.is_running and not node.paused]

    def _ports(self) -> set[int]:
        return {node.port for node in self.live_nodes()}

    def node_at(self, port: int) -> RedisNode | None:
        """Our node on `port`, if any."""
        return next((node for node in self.nodes if node.port == port), None)

    def _remember(self, entries: Sequence[NodeEntry]) -> list[NodeEntry]:
        for entry in entries:
            if entry.port and not entry.failed:
                self._port_id[entry.port] = entry.id
            if entry.master_id is not None:
                self._replica_of[entry.id] = entry.master_id
        return list(entries)

    def view(self) -> list[NodeEntry]:
        """`CLUSTER NODES` of a live node -- one saying cluster_state:ok if there is one."""
        fallback: list[NodeEntry] | None = None
        for node in self.live_nodes():
            with contextlib.suppress(redis.RedisError, OSError):
                entries = _entries(node.port)
                if _state(node.port) == "ok":
                    return self._remember(entries)
                fallback = fallback or entries
        if fallback is None:
            raise NodeError(f"no node of {self!r} answers")
        return self._remember(fallback)

    def _nodes_of(self, entries: Sequence[NodeEntry]) -> list[RedisNode]:
        found = (self.node_at(e.port) for e in sorted(entries, key=lambda e: (e.slots, e.port)))
        return [node for node in found if node is not None]

    def masters(self) -> list[RedisNode]:
        """Nodes that serve slots now (not failed), in slot order."""
        return self._nodes_of([e for e in self.view() if e.is_master and not e.failed and e.slots])

    def replicas(self) -> list[RedisNode]:
        """Nodes that are replicas now (not failed)."""
        return self._nodes_of([e for e in self.view() if not e.is_master and not e.failed])

    def replicas_of(self, master: RedisNode) -> list[RedisNode]:
        """Current replicas (not failed) of `master`."""
        entries = self.view()
        ids = {e.id for e in entries if e.port == master.port}
        return self._nodes_of([e for e in entries if e.master_id in ids and not e.failed])

    def master_of(self, key: str | bytes) -> RedisNode:
        """The node that serves `key`'s slot now."""
        slot = key_slot(key)
        for entry in self.view():
            if entry.is_master and not entry.failed and entry.serves(slot):
                node = self.node_at(entry.port)
                if node is not None:
                    return node
        raise NodeError(f"no reachable master serves slot {slot} (key {key!r})")

    def flushall(self) -> None:
        """FLUSHALL on every master (replicas follow)."""
        for node in self.masters():
            _call(node.port, "FLUSHALL")

    # -- waits ---------------------------------------------------------------------------

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Wait until every live node says cluster_state:ok, all 16384 slots are served by
        live masters, and the live nodes agree on the configuration (use after failovers)."""
        deadline = time.monotonic() + timeout
        _wait(lambda: health_problem(self._ports()), deadline, f"{self!r} to be healthy")

    def wait_replicated(self, timeout: float = 15.0) -> None:
        """Wait until every live replica is linked up and online at its master."""
        deadline = time.monotonic() + timeout
        _wait(lambda: replication_problem(self._ports()), deadline, "replicas to be online")

    def failover_wait(self, old_master: RedisNode, timeout: float = 15.0) -> RedisNode:
        """After `old_master` was killed or paused: wait until one of its replicas is a
        master serving slots and the cluster is healthy; return the promoted node."""
        deadline = time.monotonic() + timeout
        old_id = self._port_id.get(old_master.port)
        entries: list[NodeEntry] = []
        with contextlib.suppress(NodeError):
            entries = self.view()  # the latest links, if the failover has not happened yet
        old_id = old_id or self._port_id.get(old_master.port)
        candidates = {r for r, m in self._replica_of.items() if m == old_id}
        if any(e.id == old_id and e.is_master and e.slots for e in entries):
            # Not failed over yet: a candidate that is a master already was one before.
            candidates -= {e.id for e in entries if e.is_master and e.slots}
        if not candidates:
            raise NodeError(f"{old_master!r} has no known replica to promote")
        promoted: list[RedisNode] = []

        def check() -> Problem:
            for entry in self.view():
                node = self.node_at(entry.port)
                promoted_now = entry.id in candidates and entry.is_master and not entry.failed
                if promoted_now and entry.slots and node in self.live_nodes():
                    promoted[:] = [node] if node else []
                    return health_problem(self._ports())
            return f"no replica of {old_master!r} promoted yet"

        _wait(check, deadline, f"a replica of {old_master!r} to take over")
        return promoted[0]

    # -- repair --------------------------------------------------------------------------

    def heal(self, timeout: float = 30.0) -> None:
        """Resume paused nodes, restart dead ones (empty) and bring them back into the
        cluster -- as replicas when a replica took over their slots -- then wait until the
        cluster is healthy and every replica is online."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.paused and node.is_running:
                node.resume()
        dead = [node for node in self.nodes if not node.is_running]
        if dead:
            dead_ports = {node.port for node in dead}
            _wait(lambda: self._takeover_problem(dead_ports), deadline, "pending failovers")
            for node in dead:
                node.restart()
            self._rejoin(dead, deadline)
        _wait(lambda: health_problem(self._ports()), deadline, f"{self!r} to be healthy")
        _wait(lambda: replication_problem(self._ports()), deadline, "replicas to be online")

    def _takeover_problem(self, dead_ports: set[int]) -> Problem:
        """A dead master that still holds slots while one of its replicas lives: wait."""
        live = self._ports()
        if not live:
            return None
        entries = self.view()
        for entry in entries:
            if entry.port in dead_ports and entry.is_master and entry.slots:
                heirs = [e for e in entries if e.master_id == entry.id and e.port in live]
                if heirs:
                    return f"a replica of {entry.port} has not taken over yet"
        return None

    def _rejoin(self, restarted: Sequence[RedisNode], deadline: float) -> None:
        """Re-introduce nodes that came back without their cluster config (containers)."""
        blank = [n for n in restarted if len(_entries(n.port)) <= 1]
        if not blank:
            return  # they read their config file back and rejoin on their own
        others = [n for n in self.live_nodes() if n not in blank]
        if not others:  # everything was lost: start over
            n_masters, n_replicas = self.shape
            form_cluster(
                [n.port for n in self.nodes],
                n_masters,
                n_replicas,
                max(1.0, deadline - time.monotonic()),
            )
            return
        new_ids = {n.port: str(_call(n.port, "CLUSTER", "MYID")) for n in blank}
        current = set(new_ids.values()) | {str(_call(n.port, "CLUSTER", "MYID")) for n in others}
        # Earlier identities of the restarted nodes: flagged fail, or noaddr once another node
        # answered on their address. Forget them everywhere, or gossip brings them back.
        stale = {e.id: e for n in others for e in _entries(n.port) if e.id not in current}
        orphaned = [r for e in stale.values() if e.is_master for r in e.slots]
        for stale_id in stale:
            for node in others:
                with contextlib.suppress(redis.ResponseError):
                    _call(node.port, "CLUSTER", "FORGET", stale_id)
        for node in blank:
            _call(others[0].port, "CLUSTER", "MEET", LOOPBACK, node.port)
        ports = {n.port for n in self.live_nodes()}
        _wait(lambda: _acquaintance_problem(ports), deadline, "restarted nodes to be known")
        load: dict[str, int] = {}
        if orphaned:  # nobody took these slots over: the first restarted node serves them
            add_slots(blank[0].port, orphaned)
            load[new_ids[blank[0].port]] = 0
            blank = blank[1:]
        if not blank:
            return
        entries = self.view()
        heads = [e for e in entries if e.is_master and not e.failed and e.slots]
        load |= {m.id: sum(e.master_id == m.id and not e.failed for e in entries) for m in heads}
        for node in blank:  # each to the master with the fewest live replicas
            target = min(load, key=lambda i: load[i])
            _call(node.port, "CLUSTER", "REPLICATE", target)
            load[target] += 1


def start_cluster(
    provider: NodeProvider,
    masters: int = 3,
    replicas: int = 1,
    *,
    node_timeout_ms: int = 1000,
    timeout: float = 60.0,
) -> RedisClusterHandle:
    """Start and form a cluster on `provider` (which stops its nodes on close)."""
    if masters < 1 or replicas < 0:
        raise ValueError(f"need masters >= 1 and replicas >= 0, got {masters}, {replicas}")
    if node_timeout_ms < 100:
        raise ValueError(f"node_timeout_ms must be >= 100, got {node_timeout_ms}")
    nodes = start_cluster_nodes(provider, masters * (1 + replicas), node_timeout_ms)
    try:
        form_cluster([node.port for node in nodes], masters, replicas, timeout)
    except BaseException:
        _stop_all(nodes)
        raise
    handle = RedisClusterHandle(
        nodes, masters=masters, replicas=replicas, node_timeout_ms=node_timeout_ms
    )
    handle.view()
    return handle


@contextlib.contextmanager
def redis_cluster(
    masters: int = 3,
    replicas: int = 1,
    *,
    kind: str | None = None,
    node_timeout_ms: int = 1000,
) -> Iterator[RedisClusterHandle]:
    """Start a healthy cluster on a fresh provider; stop every node on exit, even on errors."""
    from fleetcache.testing import get_provider  # noqa: PLC0415  (the package imports us)

    provider = get_provider(kind)
    try:
        yield start_cluster(provider, masters, replicas, node_timeout_ms=node_timeout_ms)
    finally:
        provider.close()


# -- a cluster that outlives this process: python -m fleetcache.testing.cluster --------------


def state_dir() -> Path:
    """`${XDG_RUNTIME_DIR:-/tmp}/fleetcache-cluster`: PID files, logs, node configs."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / "fleetcache-cluster"


def _spawn(binary: str, port: int, args: Sequence[str], state: Path) -> None:
    """Start a daemonized redis-server writing `redis-PORT.pid`; wait until it answers."""
    pid_file, log_file = state / f"redis-{port}.pid", state / f"redis-{port}.log"
    subprocess.run(
        [
            binary,
            "--port",
            str(port),
            *args,
            "--dir",
            str(state),
            "--daemonize",
            "yes",
            "--pidfile",
            str(pid_file),
            "--logfile",
            str(log_file),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    deadline = time.monotonic() + 15
    while True:
        with contextlib.suppress(redis.RedisError, OSError, ValueError):
            pid = int(pid_file.read_text())
            if int(_call(port, "INFO", "server")["process_id"]) == pid:
                return
        if time.monotonic() > deadline:
            tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            raise NodeError(f"redis-server on port {port} did not come up:\n{tail}")
        time.sleep(0.02)


def _ours(pid: int, port: int) -> bool:
    """True when `pid` is a redis-server serving `port` (never signal a recycled PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    cmdline += b" "
    return b"redis-" in cmdline and any(
        marker.encode() in cmdline for marker in (f":{port} ", f"--port {port} ")
    )


def stop_from_pid_files(state: Path) -> int:
    """Stop every server with a PID file in `state` (TERM, then KILL); return how many."""
    stopped = 0
    for pid_file in sorted(state.glob("redis-*.pid")):
        port = int(pid_file.stem.removeprefix("redis-"))
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if _ours(pid, port):
                os.kill(pid, signal.SIGTERM)
                try:
                    wait_port_closed(LOOPBACK, port, timeout=10)
                except NodeError:
                    if _ours(pid, port):
                        os.kill(pid, signal.SIGKILL)
                    wait_port_closed(LOOPBACK, port, timeout=10)
                stopped += 1
        pid_file.unlink(missing_ok=True)
    for leftover in state.glob("nodes-*.conf"):
        leftover.unlink(missing_ok=True)
    return stopped


def describe(port: int) -> str:
    """`127.0.0.1:PORT <role>` for status lines."""
    try:
        info = _replication(port)
        enabled = str(_call(port, "INFO", "cluster").get("cluster_enabled")) == "1"
    except (redis.RedisError, OSError):
        return f"{LOOPBACK}:{port} down"
    kind = "cluster" if enabled else "standalone"
    if info.get("role") == "slave":
        return (
            f"{LOOPBACK}:{port} replica of {info['master_host']}:{info['master_port']} "
            f"({kind}, link {info.get('master_link_status')})"
        )
    return f"{LOOPBACK}:{port} master ({kind})"


def _ports_of(args: argparse.Namespace) -> tuple[list[int], list[int]]:
    count = args.masters * (1 + args.replicas)
    cluster = list(range(args.ports_from, args.ports_from + count))
    redlock = list(range(args.redlock_ports_from, args.redlock_ports_from + args.redlock_masters))
    return cluster, redlock


def _up(args: argparse.Namespace) -> int:
    cluster, redlock = _ports_of(args)
    if all(port_is_open(LOOPBACK, p) for p in cluster + redlock):
        with contextlib.suppress(redis.RedisError, OSError):
            if health_problem(cluster) is None:
                print("already up")
                return 0
    busy = [p for p in cluster + redlock if port_is_open(LOOPBACK, p)]
    busy += [p + BUS_OFFSET for p in cluster if port_is_open(LOOPBACK, p + BUS_OFFSET)]
    if busy:
        print(f"ports in use: {busy} (`down` first?)", file=sys.stderr)
        return 1
    state = args.state_dir
    state.mkdir(parents=True, exist_ok=True)
    stop_from_pid_files(state)  # leftovers of a crashed run: their ports are closed anyway
    binary = find_redis_server()
    started = time.monotonic()
    try:
        for port in cluster:
            _spawn(
                binary,
                port,
                [*BASE_ARGS, *cluster_args(args.node_timeout_ms, f"nodes-{port}.conf")],
                state,
            )
        for port in redlock:
            _spawn(binary, port, BASE_ARGS, state)
        form_cluster(cluster, args.masters, args.replicas, args.timeout)
    except BaseException:
        stop_from_pid_files(state)
        raise
    print(
        f"cluster up on {cluster[0]}-{cluster[-1]} in {time.monotonic() - started:.1f}s"
        + (f", Redlock masters on {redlock[0]}-{redlock[-1]}" if redlock else "")
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster, redlock = _ports_of(args)
    deadline = time.monotonic() + args.wait
    problem: Problem = "not checked"
    while True:
        up = all(port_is_open(LOOPBACK, p) for p in cluster + redlock)
        with contextlib.suppress(redis.RedisError, OSError):
            problem = health_problem(cluster) if up else "a port is closed"
        if problem is None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for port in cluster + redlock:
        print(describe(port))
    print("cluster_state: ok" if problem is None else f"cluster not ok: {problem}")
    return 0 if problem is None else 1


def main(argv: Sequence[str] | None = None) -> int:
    """`up` / `status` / `down` of a local cluster on fixed ports (see the module doc)."""
    parser = argparse.ArgumentParser(
        prog="python -m fleetcache.testing.cluster",
        description="A local Redis Cluster on fixed ports.",
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--ports-from", type=int, default=7000)
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--redlock-ports-from", type=int, default=7100)
    parser.add_argument("--redlock-masters", type=int, default=5, help="0: none")
    parser.add_argument("--node-timeout-ms", type=int, default=3000)
    parser.add_argument("--timeout", type=float, default=60.0, help="up: formation budget")
    parser.add_argument("--wait", type=float, default=0.0, help="status: wait this long for ok")
    parser.add_argument("--state-dir", type=Path, default=state_dir())
    args = parser.parse_args(argv)
    if args.command == "up":
        return _up(args)
    if args.command == "status":
        return _status(args)
    print(f"stopped {stop_from_pid_files(args.state_dir)} server(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
