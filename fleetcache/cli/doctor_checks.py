"""``doctor``'s per-node checks, each ``(node, context) -> lines``.

- **version**: >= 6.2 required; >= 7.0 noted (sharded pub/sub, which the cache uses on a
  cluster: a cluster below 7.0 is a WARN).
- **scripts**: ``EVAL`` runs, every Lua script fleetcache ships loads, and on a writable
  node (standalone, master) ``claim.lua`` + ``write.lua`` run on a scratch key.
- **pubsub**: a message published (on a cluster: on the entry node, across the cluster
  bus) reaches a subscriber on this node within 2 s; **spubsub** on a cluster >= 7.0: a
  sharded message published on the shard's master reaches this node.
- **acl**: every command the cache sends (directly or from its scripts) and the ``fc:*``
  keys and channels are permitted; a refusal names what to grant (``ACL SETUSER ...``).
- **memory**: ``maxmemory-policy``: ``noeviction`` is a WARN (writes fail with OOM once
  memory is full), ``allkeys-*``/``volatile-*`` OK.
- **cluster** (cluster only): this node's ``CLUSTER INFO``: state ok, every slot served.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any

import redis
from redis.exceptions import NoPermissionError

from fleetcache.cli.doctor_nodes import (
    FAIL,
    OK,
    SCRATCH_TTL_MS,
    SKIP,
    SLOTS,
    WARN,
    Check,
    Context,
    Line,
    Node,
    as_fields,
    as_text,
    describe,
    shipped_scripts,
)

MIN_VERSION = (6, 2)
#: Sharded pub/sub (SSUBSCRIBE, SPUBLISH), which the cache uses on a cluster.
SHARDED_VERSION = (7, 0)
#: How long a published message may take to reach a subscriber (seconds).
PUBSUB_TIMEOUT = 2.0


def _client(node: Node) -> redis.Redis:
    assert node.client is not None
    return node.client


def check_version(node: Node, ctx: Context) -> list[Line]:
    """Server version >= 6.2; sharded pub/sub (7.0) noted."""
    text = str(node.info.get("redis_version", "?"))
    version = node.version
    need = ".".join(map(str, MIN_VERSION))
    mode = node.info.get("redis_mode", "standalone")
    if version[:2] < MIN_VERSION:
        return [Line(FAIL, "version", node.name, f"Redis {text}: fleetcache needs >= {need}")]
    if node.role == "redlock":
        return [Line(OK, "version", node.name, f"Redis {text} ({mode})")]
    if version[:2] >= SHARDED_VERSION:
        return [Line(OK, "version", node.name, f"Redis {text} ({mode}); sharded pub/sub available")]
    if ctx.cluster:
        return [Line(WARN, "version", node.name,
                     f"Redis {text}: no sharded pub/sub before 7.0, so the cache's wake-ups "
                     "are broadcast to every node of the cluster")]
    return [Line(OK, "version", node.name,
                 f"Redis {text} ({mode}); >= 7.0 adds sharded pub/sub (used on a cluster)")]


def check_scripts(node: Node, ctx: Context) -> list[Line]:
    """EVAL runs; every shipped script loads; on a writable node claim + write run."""
    from fleetcache.core._sync.store import REFUSED, Store  # noqa: PLC0415
    from fleetcache.core.keys import KeyLayout  # noqa: PLC0415

    client = _client(node)
    token = secrets.token_hex(8)
    got = client.eval("return ARGV[1]", 0, token)
    if got not in (token, token.encode()):
        return [Line(FAIL, "scripts", node.name, f"EVAL returned {got!r}, not its argument")]
    scripts = shipped_scripts()
    failed: list[str] = []
    for name, source in scripts.items():
        try:
            client.script_load(source)
        except redis.ResponseError as exc:
            if isinstance(exc, NoPermissionError):
                raise
            failed.append(f"{name}: {exc}")
    if failed:
        return [Line(FAIL, "scripts", node.name, "; ".join(failed))]
    detail = f"EVAL ok; {len(scripts)} fleetcache Lua scripts load"
    if node.writable:
        store = Store(client, KeyLayout(ctx.namespace), SCRATCH_TTL_MS)
        store.sharded = False
        keys = KeyLayout(ctx.namespace).entry(node.tag, 1)
        _, fence = store.claim(keys, None, SCRATCH_TTL_MS)
        result = store.write(keys, b"doctor", SCRATCH_TTL_MS, fence)
        if result == REFUSED or client.get(keys.value) != b"doctor":
            return [Line(FAIL, "scripts", node.name,
                         f"claim + write on {keys.value} did not store the value")]
        detail += "; claim + write ran on a scratch key"
    return [Line(OK, "scripts", node.name, detail)]


def _await_message(pubsub: Any, deadline: float, data: bytes) -> bool:
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.05)
        if msg is not None and msg.get("data") == data:
            return True
    return False


def _await_subscribed(pubsub: Any, deadline: float) -> None:
    while not pubsub.subscribed and time.monotonic() < deadline:
        pubsub.get_message(timeout=0.05)


def check_pubsub(node: Node, ctx: Context) -> list[Line]:
    """A message published (on a cluster: through another node) reaches a subscriber here
    within 2 s; on a cluster >= 7.0 a sharded message too."""
    lines = [_classic(node, ctx)]
    if ctx.cluster and node.version[:2] >= SHARDED_VERSION:
        lines.append(_sharded(node, ctx))
    return lines


def _refused(exc: NoPermissionError, node: Node, check: str, what: str) -> Line:
    return Line(FAIL, check, node.name, f"{what} refused (NOPERM {exc}): see the acl line")


def _classic(node: Node, ctx: Context) -> Line:
    client = _client(node)
    publisher = ctx.publisher if ctx.publisher is not None else client
    kwargs = publisher.connection_pool.connection_kwargs
    where = "" if publisher is client else (
        f" (published on {kwargs.get('host')}:{kwargs.get('port')})"
    )
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    deadline = time.monotonic() + PUBSUB_TIMEOUT
    data = secrets.token_hex(4).encode()
    try:
        pubsub.subscribe(ctx.channel)
        _await_subscribed(pubsub, deadline)
        start = time.perf_counter()
        try:
            receivers = publisher.publish(ctx.channel, data)
        except (redis.RedisError, OSError) as exc:
            if publisher is client or isinstance(exc, NoPermissionError):
                raise
            return Line(SKIP, "pubsub", node.name,
                        f"PUBLISH{where} failed: {describe(exc, ctx.timeout)}")
        if _await_message(pubsub, deadline, data):
            took = 1000 * (time.perf_counter() - start)
            return Line(OK, "pubsub", node.name, f"delivered in {took:.1f} ms{where}")
        return Line(FAIL, "pubsub", node.name,
                    f"no message within {PUBSUB_TIMEOUT:g} s{where} "
                    f"({receivers} receiver(s) at PUBLISH)")
    except NoPermissionError as exc:
        return _refused(exc, node, "pubsub", "SUBSCRIBE/PUBLISH")
    finally:
        pubsub.close()


def _sharded(node: Node, ctx: Context) -> Line:
    master = node if node.role == "master" else ctx.masters.get(node.master or "")
    if master is None or master.client is None or master.down is not None:
        return Line(SKIP, "spubsub", node.name, "its master does not answer")
    channel = f"fc:{ctx.namespace}:1:{{{node.tag}}}:doctor"
    pubsub = _client(node).pubsub(ignore_subscribe_messages=True)
    deadline = time.monotonic() + PUBSUB_TIMEOUT
    data = secrets.token_hex(4).encode()
    try:
        pubsub.ssubscribe(channel)
        _await_subscribed(pubsub, deadline)
        start = time.perf_counter()
        try:
            master.client.spublish(channel, data)
        except (redis.RedisError, OSError) as exc:
            if master is node or isinstance(exc, NoPermissionError):
                raise
            return Line(SKIP, "spubsub", node.name,
                        f"SPUBLISH on its master failed: {describe(exc, ctx.timeout)}")
        if _await_message(pubsub, deadline, data):
            took = 1000 * (time.perf_counter() - start)
            return Line(OK, "spubsub", node.name, f"sharded message delivered in {took:.1f} ms")
        return Line(FAIL, "spubsub", node.name,
                    f"no sharded message within {PUBSUB_TIMEOUT:g} s")
    except NoPermissionError as exc:
        return _refused(exc, node, "spubsub", "SSUBSCRIBE/SPUBLISH")
    finally:
        pubsub.close()


# --------------------------------------------------------------------------- ACL

_COMMAND_RE = re.compile(r"run the '([^']+)' command")


def acl_probes(node: Node, ctx: Context) -> list[tuple[str, tuple[Any, ...]]]:
    """The commands the cache sends (directly or from its scripts), on scratch keys.

    The ACL is checked before anything else (even before a cluster's MOVED), so a probe
    answers "allowed" with any reply but NOPERM.
    """
    key = f"fc:{ctx.namespace}:acl:{{{node.tag}}}"
    counter = key + ":n"
    probe = "return 1"
    probes: list[tuple[str, tuple[Any, ...]]] = [
        ("PING", ("PING",)),
        ("SET", ("SET", key, "1", "PX", SCRATCH_TTL_MS)),
        ("GET", ("GET", key)),
        ("MGET", ("MGET", key, counter)),
        ("INCR", ("INCR", counter)),
        ("INCRBY", ("INCRBY", counter, 1)),
        ("PEXPIRE", ("PEXPIRE", counter, SCRATCH_TTL_MS)),
        ("PTTL", ("PTTL", counter)),
        ("TIME", ("TIME",)),
        ("DEL", ("DEL", key)),
        ("UNLINK", ("UNLINK", counter)),
        ("SCAN", ("SCAN", 0, "MATCH", ctx.pattern, "COUNT", 10)),
        ("EVAL", ("EVAL", probe, 0)),
        ("SCRIPT LOAD", ("SCRIPT", "LOAD", probe)),
        ("EVALSHA", ("EVALSHA", hashlib.sha1(probe.encode()).hexdigest(), 0)),
        ("PUBLISH", ("PUBLISH", ctx.channel, "doctor")),
        ("SUBSCRIBE", ("SUBSCRIBE", ctx.channel)),
    ]
    if ctx.cluster:
        probes += [
            ("CLUSTER SLOTS", ("CLUSTER", "SLOTS")),  # redis-py's cluster client maps the
            ("COMMAND", ("COMMAND",)),                 # slots and reads the command table
            ("INFO", ("INFO", "server")),  # the cache asks a master's version once
        ]
    if ctx.cluster and node.version[:2] >= SHARDED_VERSION:
        shard = f"fc:{ctx.namespace}:1:{{{node.tag}}}:doctor"
        probes += [("SPUBLISH", ("SPUBLISH", shard, "doctor")),
                   ("SSUBSCRIBE", ("SSUBSCRIBE", shard)),
                   ("SUNSUBSCRIBE", ("SUNSUBSCRIBE", shard))]
    return probes


def _probe(client: redis.Redis, args: tuple[Any, ...]) -> None:
    """Send one command; raise NoPermissionError on NOPERM, nothing on other replies."""
    if args[0] in ("SUBSCRIBE", "SSUBSCRIBE"):
        conn = client.connection_pool.get_connection()
        try:
            conn.send_command(*args)
            conn.read_response()
        except redis.ResponseError as exc:
            if isinstance(exc, NoPermissionError):
                raise
        finally:
            conn.disconnect()  # it is in subscriber mode
            client.connection_pool.release(conn)
        return
    try:
        client.execute_command(*args)
    except redis.ResponseError as exc:
        if isinstance(exc, NoPermissionError):
            raise


def check_acl(node: Node, ctx: Context) -> list[Line]:
    """Every command the cache sends, and the ``fc:*`` keys and channels, are permitted."""
    client = _client(node)
    try:
        user = as_text(client.acl_whoami())
    except redis.ResponseError:
        user = client.connection_pool.connection_kwargs.get("username") or "default"
    commands: list[str] = []
    denied_keys: list[str] = []
    denied_channels: list[str] = []
    probes = acl_probes(node, ctx)
    for label, args in probes:
        try:
            _probe(client, args)
        except NoPermissionError as exc:
            text = str(exc)
            if "channel" in text:
                denied_channels.append(label)
            elif "key" in text:
                denied_keys.append(label)
            else:
                match = _COMMAND_RE.search(text)
                commands.append(match.group(1) if match else label.lower().replace(" ", "|"))
    if not (commands or denied_keys or denied_channels):
        return [Line(OK, "acl", node.name,
                     f"user {user!r} may run the {len(probes)} commands the cache sends, "
                     "on keys and channels fc:*")]
    grant = [f"+{c}" for c in commands]
    refused = []
    if commands:
        refused.append("commands " + ", ".join(commands))
    if denied_keys:
        grant.insert(0, "~fc:*")
        refused.append("keys fc:* (" + ", ".join(denied_keys) + ")")
    if denied_channels:
        grant.insert(0, "&fc:*")
        refused.append("channels fc:* (" + ", ".join(denied_channels) + ")")
    return [Line(FAIL, "acl", node.name,
                 f"user {user!r} is refused {'; '.join(refused)}: "
                 f"grant ACL SETUSER {user} {' '.join(grant)}")]


# --------------------------------------------------------------------------- memory, cluster


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def check_memory(node: Node, ctx: Context) -> list[Line]:
    """``maxmemory-policy``: noeviction is a WARN (writes fail with OOM when full)."""
    policy = node.info.get("maxmemory_policy")
    if policy is None:
        return [Line(WARN, "memory", node.name, "INFO refused: maxmemory-policy not checked")]
    maxmemory = int(node.info.get("maxmemory", 0) or 0)
    used = int(node.info.get("used_memory", 0) or 0)
    limit = "no maxmemory" if maxmemory == 0 else (
        f"{_bytes(used)} of maxmemory {_bytes(maxmemory)} used"
    )
    if policy == "noeviction":
        return [Line(WARN, "memory", node.name,
                     f"maxmemory-policy noeviction ({limit}): entries are not evicted, and "
                     "once memory is full writes fail with OOM (the cache then computes "
                     "without storing); set allkeys-lru or volatile-lru (every fleetcache "
                     "key has a TTL)")]
    if policy.startswith(("allkeys-", "volatile-")):
        if maxmemory and used > 0.9 * maxmemory:
            return [Line(WARN, "memory", node.name,
                         f"maxmemory-policy {policy}; {limit}: evicting")]
        return [Line(OK, "memory", node.name, f"maxmemory-policy {policy} ({limit})")]
    return [Line(WARN, "memory", node.name, f"maxmemory-policy {policy!r} ({limit})")]


def check_cluster(node: Node, ctx: Context) -> list[Line]:
    """This node's view: cluster_state ok and every slot served."""
    try:
        info = as_fields(_client(node).execute_command("CLUSTER", "INFO"))
    except NoPermissionError:  # the doctor's need, not the cache's
        return [Line(WARN, "cluster", node.name,
                     "CLUSTER INFO refused to this user: the node's view of the cluster "
                     "state is not checked")]
    state = info.get("cluster_state", "?")
    assigned = int(info.get("cluster_slots_assigned", 0))
    slots_ok = int(info.get("cluster_slots_ok", 0))
    pfail = int(info.get("cluster_slots_pfail", 0))
    failed = int(info.get("cluster_slots_fail", 0))
    detail = (f"cluster_state {state}, {slots_ok}/{SLOTS} slots ok, "
              f"{assigned} assigned, {info.get('cluster_known_nodes', '?')} known nodes")
    if state != "ok" or assigned < SLOTS or failed:
        return [Line(FAIL, "cluster", node.name, detail + f", {failed} slots fail")]
    if pfail:
        return [Line(WARN, "cluster", node.name, detail + f", {pfail} slots pfail")]
    return [Line(OK, "cluster", node.name, detail)]


SERVER_CHECKS: tuple[Check, ...] = (
    check_version, check_scripts, check_pubsub, check_acl, check_memory
)
CLUSTER_CHECKS: tuple[Check, ...] = (*SERVER_CHECKS, check_cluster)
