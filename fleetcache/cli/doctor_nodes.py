"""``doctor``'s model of a deployment: its nodes, the verdict lines, and how they are found.

:func:`discover` finds the nodes behind ``--redis``: one standalone node, or every master and
replica of a Redis Cluster (``INFO``'s ``cluster_enabled``, then ``CLUSTER NODES``).
:func:`check_node` runs a list of checks (:mod:`fleetcache.cli.doctor_checks`) on one node
and turns errors into FAIL lines; :func:`clean_node` deletes the scratch keys.

Every node gets its own plain client with short socket timeouts and no retry, so a paused or
black-holed node costs about one timeout and yields a FAIL line naming it, never a hang.
Every key the doctor writes lives in the scratch namespace (``fc:doctor-<random>:*``) with
a TTL.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from fleetcache.errors import FleetcacheError

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
#: TTL of every key the doctor writes (ms): a cleanup that could not reach a node still
#: leaves nothing behind for long.
SCRATCH_TTL_MS = 60_000
SLOTS = 16384


@dataclass
class Line:
    """One verdict line.  ``tolerated``: a FAIL that the deployment survives (a Redlock
    node while a quorum holds), counted as a WARN in the verdict."""

    status: str
    check: str
    node: str
    detail: str
    tolerated: bool = False
    data: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The line as a JSON object."""
        out: dict[str, Any] = {
            "status": self.status, "check": self.check, "node": self.node, "detail": self.detail
        }
        if self.tolerated:
            out["tolerated"] = True
        if self.data is not None:
            out["data"] = self.data
        return out


@dataclass
class Node:
    """One Redis server the doctor talks to."""

    host: str
    port: int
    url: str
    #: ``standalone``, ``master``, ``replica`` or ``redlock``.
    role: str
    label: str = ""
    master: str | None = None
    slots: tuple[tuple[int, int], ...] = ()
    flags: tuple[str, ...] = ()
    #: A hash-tag text (a SHA-256 hex digest) whose keys live in this node's shard.
    tag: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    client: redis.Redis | None = None
    #: Why the node stopped answering (then its remaining checks are not run).
    down: str | None = None

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def name(self) -> str:
        """What the node column shows."""
        return self.label or f"{self.address} ({self.role})"

    @property
    def version(self) -> tuple[int, ...]:
        """The server version from INFO (or HELLO)."""
        return parse_version(str(self.info.get("redis_version", "")))

    @property
    def writable(self) -> bool:
        """Whether the cache writes here (a standalone node or a master)."""
        return self.role in ("standalone", "master")


@dataclass
class Context:
    """What every node's checks share."""

    namespace: str
    timeout: float
    cluster: bool = False
    #: Publishes the pub/sub check's message (on a cluster: the entry node, so that
    #: delivery crosses the cluster bus); None: the node publishes to itself.
    publisher: redis.Redis | None = None
    #: Masters by address (a replica's sharded pub/sub message is published on its master).
    masters: dict[str, Node] = field(default_factory=dict)

    @property
    def channel(self) -> str:
        """The scratch namespace's events channel."""
        return f"fc:{self.namespace}:events"

    @property
    def pattern(self) -> str:
        """Every key of the scratch namespace."""
        return f"fc:{self.namespace}:*"


# --------------------------------------------------------------------------- helpers


def parse_version(text: str) -> tuple[int, ...]:
    """``'7.0.15'`` -> ``(7, 0, 15)`` (non-numeric parts are dropped)."""
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def shipped_scripts() -> dict[str, str]:
    """Every Lua script fleetcache ships, by ``package/name``."""
    scripts: dict[str, str] = {}
    for package in ("fleetcache.core", "fleetcache.locking"):
        for entry in resources.files(package).joinpath("lua").iterdir():
            if entry.name.endswith(".lua"):
                scripts[f"{package.split('.')[-1]}/{entry.name}"] = entry.read_text("utf-8")
    return dict(sorted(scripts.items()))


def node_url(url: str, host: str, port: int) -> str:
    """``url`` (scheme, credentials, options) pointed at ``host:port``."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def open_client(url: str, timeout: float) -> redis.Redis:
    """A plain client: ``timeout`` to connect and per reply, no retry, RESP2 (bytes
    replies, and a subscription's confirmation is an ordinary reply)."""
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
    )
    return client


def is_outage(exc: BaseException) -> bool:
    """A timeout or a connection error (not an error reply)."""
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)) and not (
        isinstance(exc, redis.ResponseError)
    )


def describe(exc: BaseException, timeout: float) -> str:
    """A short, clear reason for ``exc``."""
    if isinstance(exc, FleetcacheError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, redis.TimeoutError) or "timed out" in str(exc).lower():
        return f"no reply within {timeout:g} s (paused, overloaded or black-holed?)"
    text = str(exc)
    if isinstance(exc, redis.ConnectionError):
        if "refused" in text.lower():
            return "connection refused (nothing listens there)"
        return f"connection failed: {text}"
    if isinstance(exc, NoPermissionError):
        return f"NOPERM {text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def shard_tag(slots: Sequence[tuple[int, int]]) -> str:
    """A SHA-256 hex digest whose hash tag falls in one of ``slots`` (any when empty)."""
    for i in range(100_000):
        digest = hashlib.sha256(f"fleetcache-doctor-{i}".encode()).hexdigest()
        if not slots:
            return digest
        slot = key_slot(digest.encode())
        if any(lo <= slot <= hi for lo, hi in slots):
            return digest
    raise ValueError(f"no hash tag found for slots {slots}")  # pragma: no cover


def as_text(raw: Any) -> str:
    """``raw`` as a str (bytes decoded)."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def as_fields(raw: Any) -> dict[str, str]:
    """``CLUSTER INFO``'s ``key:value`` lines as a dict (redis-py may have parsed them)."""
    if isinstance(raw, dict):
        return {as_text(k): as_text(v) for k, v in raw.items()}
    return dict(
        line.split(":", 1) for line in as_text(raw).splitlines() if ":" in line
    )


# --------------------------------------------------------------------------- discovery


@dataclass
class Topology:
    """The nodes behind ``--redis``."""

    cluster: bool
    nodes: list[Node]
    #: The node the URL names (it answered; on a cluster it mapped the others).
    entry: Node


def connect_node(node: Node, timeout: float) -> Line:
    """PING, then INFO (HELLO when INFO is refused): the ``connect`` line."""
    node.client = open_client(node.url, timeout)
    start = time.perf_counter()
    try:
        node.client.ping()
        elapsed = time.perf_counter() - start
        try:
            node.info = dict(node.client.info())
        except NoPermissionError:
            raw = node.client.execute_command("HELLO")
            pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
            hello = {as_text(k): v for k, v in pairs}
            node.info = {
                "redis_version": as_text(hello.get("version", "")),
                "redis_mode": as_text(hello.get("mode", "")),
                "role": as_text(hello.get("role", "")),
            }
    except (redis.RedisError, OSError) as exc:
        node.down = describe(exc, timeout)
        return Line(FAIL, "connect", node.name, node.down)
    return Line(OK, "connect", node.name, f"PING {1000 * elapsed:.1f} ms")


def discover(url: str, timeout: float) -> tuple[Topology | None, list[Line]]:
    """The nodes behind ``url``; None (with a FAIL line) when its node does not answer."""
    parts = urlsplit(url)
    entry = Node(parts.hostname or "127.0.0.1", parts.port or 6379, url, "standalone")
    line = connect_node(entry, timeout)
    if entry.down is not None:
        return None, [line]
    if str(entry.info.get("cluster_enabled", "0")) != "1" and entry.info.get(
        "redis_mode"
    ) != "cluster":
        if str(entry.info.get("role", "master")) not in ("master", ""):
            entry.role = "replica"
        entry.tag = shard_tag(())
        return Topology(False, [entry], entry), [line]
    assert entry.client is not None
    lines = [line]
    try:
        try:
            nodes = parse_cluster_nodes(
                as_text(entry.client.execute_command("CLUSTER", "NODES")), url)
        except NoPermissionError:  # CLUSTER SLOTS: what a cluster client needs anyway
            nodes = parse_cluster_slots(entry.client.execute_command("CLUSTER", "SLOTS"), url)
            lines.append(Line(WARN, "cluster", entry.address,
                              "CLUSTER NODES refused to this user: the nodes come from "
                              "CLUSTER SLOTS (a replica that has not synced yet is missing)"))
    except (redis.RedisError, OSError) as exc:
        return Topology(True, [], entry), [line, Line(
            FAIL, "cluster", entry.address,
            f"mapping the cluster (CLUSTER NODES, CLUSTER SLOTS): {describe(exc, timeout)}")]
    for node in nodes:
        if (node.host, node.port) == (entry.host, entry.port):
            node.client, node.info = entry.client, entry.info
            line.node = node.name
            entry = node
    return Topology(True, nodes, entry), lines


def parse_cluster_nodes(text: str, url: str) -> list[Node]:
    """The nodes of a ``CLUSTER NODES`` reply, masters first, each master's replicas after it."""
    by_id: dict[str, Node] = {}
    master_of: dict[str, str] = {}
    for row in text.splitlines():
        cols = row.split()
        if len(cols) < 8 or "noaddr" in cols[2] or "handshake" in cols[2]:
            continue
        address = cols[1].split("@", 1)[0].split(",", 1)[0]
        host, _, port = address.rpartition(":")
        flags = tuple(f for f in cols[2].split(",") if f != "myself")
        role = "master" if "master" in flags else "replica"
        slots: list[tuple[int, int]] = []
        for spec in cols[8:]:
            if spec.startswith("["):
                continue  # a slot being migrated or imported
            lo, _, hi = spec.partition("-")
            slots.append((int(lo), int(hi or lo)))
        node = Node(host, int(port), node_url(url, host, int(port)), role,
                    flags=flags, slots=tuple(slots))
        by_id[cols[0]] = node
        if role == "replica":
            master_of[cols[0]] = cols[3]
    for node_id, master_id in master_of.items():
        master = by_id.get(master_id)
        by_id[node_id].master = master.address if master else None
        by_id[node_id].slots = master.slots if master else ()
    return _ordered(list(by_id.values()))


def parse_cluster_slots(reply: Any, url: str) -> list[Node]:
    """The nodes of a ``CLUSTER SLOTS`` reply (no flags: it lists the nodes serving slots)."""
    nodes: dict[str, Node] = {}
    for start, end, primary, *replicas in reply:
        host, port = as_text(primary[0]), int(primary[1])
        master = nodes.setdefault(f"{host}:{port}", Node(host, port, node_url(url, host, port),
                                                         "master"))
        master.slots = (*master.slots, (int(start), int(end)))
        for replica in replicas:
            host, port = as_text(replica[0]), int(replica[1])
            nodes.setdefault(f"{host}:{port}", Node(host, port, node_url(url, host, port),
                                                    "replica", master=master.address))
    for node in nodes.values():
        if node.role == "replica" and node.master in nodes:
            node.slots = nodes[node.master].slots
    return _ordered(list(nodes.values()))


def _ordered(nodes: list[Node]) -> list[Node]:
    """Masters by address, each followed by its replicas; labels and shard tags set."""
    ordered: list[Node] = []
    for node in sorted(nodes, key=lambda n: (n.host, n.port)):
        if node.role == "master":
            ordered.append(node)
            ordered += sorted(
                (n for n in nodes if n.master == node.address), key=lambda n: (n.host, n.port)
            )
    ordered += [n for n in nodes if n not in ordered]  # replicas of unknown masters
    for node in ordered:
        node.label = f"{node.address} ({node.role})"
        node.tag = shard_tag(node.slots)
    return ordered


def topology_lines(topo: Topology) -> list[Line]:
    """Cluster only: slot coverage and the nodes the cluster itself flags as failing."""
    masters = [n for n in topo.nodes if n.role == "master"]
    replicas = [n for n in topo.nodes if n.role == "replica"]
    covered = [False] * SLOTS
    for node in masters:
        for lo, hi in node.slots:
            covered[lo : hi + 1] = [True] * (hi - lo + 1)
    missing = covered.count(False)
    lines = [
        Line(
            FAIL if missing else OK,
            "slots",
            "cluster",
            f"{len(masters)} masters, {len(replicas)} replicas; "
            + (f"{missing} of {SLOTS} slots have no master" if missing
               else f"all {SLOTS} slots covered"),
        )
    ]
    for node in topo.nodes:
        flagged = [f for f in node.flags if f in ("fail", "fail?")]
        if flagged:
            lines.append(Line(FAIL, "cluster", node.name,
                              f"flagged {'/'.join(flagged)} by {topo.entry.address}"))
    return lines


# --------------------------------------------------------------------------- running checks

Check = Callable[[Node, Context], list[Line]]


def check_node(node: Node, ctx: Context, checks: Sequence[Check]) -> list[Line]:
    """``connect`` (unless done), then ``checks`` until the node stops answering."""
    lines: list[Line] = []
    if node.client is None:
        lines.append(connect_node(node, ctx.timeout))
    if node.down is not None:
        return lines
    for check in checks:
        name = check.__name__.removeprefix("check_")
        try:
            lines += check(node, ctx)
        except (redis.RedisError, OSError, FleetcacheError) as exc:
            cause = exc.__cause__ if isinstance(exc, FleetcacheError) else exc
            lines.append(Line(FAIL, name, node.name, describe(exc, ctx.timeout)))
            if cause is not None and is_outage(cause):
                node.down = describe(exc, ctx.timeout)
                break
    return lines


# --------------------------------------------------------------------------- cleanup


def clean_node(node: Node, pattern: str, timeout: float) -> int:
    """UNLINK every key matching ``pattern`` on ``node`` (one key per command: a cluster
    node's keys sit in different slots); return how many went."""
    own = node.client is None or node.down is not None  # try again on a new connection
    client = open_client(node.url, timeout) if own else node.client
    assert client is not None
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if not keys:
            return 0
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        return sum(int(n) for n in pipe.execute(raise_on_error=False) if isinstance(n, int))
    finally:
        if own:
            client.close()
