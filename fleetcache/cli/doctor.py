"""``doctor``: is this deployment fit for fleetcache?  The suite, run against it.

``python -m fleetcache doctor --redis URL [--redlock URL,URL,...] [--json]``

- ``--redis``: a standalone Redis or any node of a Redis Cluster (told apart by
  ``INFO``'s ``cluster_enabled``).  Every node (a cluster's masters and replicas) gets the
  server checks of :mod:`~fleetcache.cli.doctor_checks`; a cluster also its slot coverage
  and each node's ``CLUSTER INFO``.  Then, when every node answered, the fleet checks of
  :mod:`~fleetcache.cli.doctor_stampede`: fencing, and a real stampede across processes.
- ``--redlock``: the independent masters of a Redlock (:mod:`~fleetcache.cli.doctor_redlock`).

Everything runs in a scratch namespace (``doctor-<random>``); every key it wrote is deleted
at the end, on every master, also when a check fails or the run is interrupted (and every
such key has a TTL, for a node that could not be reached).  The report is a table (status,
check, node, detail) and a verdict; the exit status is 1 when the verdict is FAIL.

Statuses: OK; WARN (works, with a caveat); FAIL (broken, or a node that does not answer);
SKIP (not run because an earlier check failed: the fleet checks need every node).  A
failing Redlock node is still a FAIL line, but *tolerated* (the verdict is WARN) while the
remaining nodes make a quorum: Redlock is built to lose a minority.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from fleetcache.cli.common import log, print_json
from fleetcache.cli.doctor_checks import CLUSTER_CHECKS, SERVER_CHECKS
from fleetcache.cli.doctor_nodes import (
    FAIL,
    OK,
    SKIP,
    WARN,
    Context,
    Line,
    Node,
    check_node,
    clean_node,
    describe,
    discover,
    shard_tag,
    topology_lines,
)

HELP = (
    "check a deployment (standalone, cluster, Redlock nodes): versions, scripts, pub/sub, "
    "ACL, memory policy, a real stampede, fencing, quorum and clocks"
)
#: Default socket timeout per node (seconds): a paused node costs about this long.
NODE_TIMEOUT = 1.0


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``doctor``."""
    parser.add_argument("--redis", metavar="URL",
                        help="the cache's Redis: a standalone node or any node of a cluster")
    parser.add_argument("--redlock", metavar="URL,URL,...",
                        help="the independent masters of a Redlock (quorum, clocks)")
    parser.add_argument("--processes", type=_positive(int), default=4, metavar="N",
                        help="stampede: processes (4)")
    parser.add_argument("--threads", type=_positive(int), default=4, metavar="M",
                        help="stampede: threads per process (4)")
    parser.add_argument("--timeout", type=_positive(float), default=NODE_TIMEOUT, metavar="S",
                        help=f"socket timeout per node, seconds ({NODE_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def where(url: str) -> str:
    """``host:port`` of ``url``: what the report names (never the credentials)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


def run_nodes(nodes: Sequence[Node], ctx: Context, checks: Sequence[Any]) -> list[Line]:
    """The per-node checks, all nodes at once (a hung node costs one timeout, not one per
    node); the lines in node order."""
    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        per_node = list(pool.map(lambda n: check_node(n, ctx, checks), nodes))
    return [line for lines in per_node for line in lines]


def check_deployment(
    args: argparse.Namespace, namespace: str, written: list[Node], meta: dict[str, Any]
) -> list[Line]:
    """Every check of the ``--redis`` deployment; the nodes it may write to go to
    ``written`` (for the cleanup) before anything is written."""
    from fleetcache.cli import doctor_stampede as fleet  # noqa: PLC0415

    topo, found = discover(args.redis, args.timeout)
    if topo is None:
        return found
    meta.update(mode="cluster" if topo.cluster else "standalone",
                nodes=[n.name for n in topo.nodes])
    if not topo.nodes:  # a cluster node that would not tell the others
        return found
    written += [n for n in topo.nodes if n.writable]
    ctx = Context(namespace, args.timeout, cluster=topo.cluster)
    if topo.cluster:
        ctx.publisher = topo.entry.client
        ctx.masters = {n.address: n for n in topo.nodes if n.role == "master"}
    lines = run_nodes(topo.nodes, ctx, CLUSTER_CHECKS if topo.cluster else SERVER_CHECKS)
    # The entry node's connect line (from the discovery) goes before its other lines.
    at = next((i for i, line in enumerate(lines) if line.node == topo.entry.name), 0)
    lines[at:at] = found
    if topo.cluster:
        lines += topology_lines(topo)
    fleet_node = "cluster" if topo.cluster else topo.entry.address
    down = [n.address for n in topo.nodes if n.down is not None]
    if down:
        reason = f"not run: {', '.join(down)} did not answer"
        return [*lines, Line(SKIP, "fencing", fleet_node, reason),
                Line(SKIP, "stampede", fleet_node, reason)]
    client = None
    try:
        client = fleet.data_client(args.redis, topo.cluster, args.timeout)
        lines += fleet.check_fencing(client, namespace, shard_tag(()), fleet_node)
    except Exception as exc:
        lines.append(Line(FAIL, "fencing", fleet_node, describe(exc, args.timeout)))
    finally:
        if client is not None:
            client.close()
    setup = fleet.StampedeSetup(args.redis, topo.cluster, namespace, args.threads, args.timeout)
    try:
        lines += fleet.run_stampede(setup, args.processes, fleet_node)
    except Exception as exc:
        lines.append(Line(FAIL, "stampede", fleet_node, describe(exc, args.timeout)))
    return lines


def check_redlock(
    urls: Sequence[str], namespace: str, timeout: float, written: list[Node]
) -> list[Line]:
    """The Redlock nodes: server checks, quorum, clocks; failures tolerated by quorum."""
    from fleetcache.cli import doctor_redlock as rl  # noqa: PLC0415

    nodes = rl.redlock_nodes(urls)
    written += nodes
    lines = run_nodes(nodes, Context(namespace, timeout), rl.REDLOCK_CHECKS)
    lines.append(rl.check_quorum(nodes, namespace, timeout))
    lines += rl.check_clocks(nodes, timeout)
    rl.tolerate(nodes, lines)
    return lines


def cleanup(nodes: Sequence[Node], namespace: str, timeout: float) -> list[Line]:
    """Delete the scratch namespace's keys on every node written to: one OK line with the
    count, a WARN line per node that could not be cleaned."""
    # A node that never answered got nothing from the doctor, except a Redlock node: the
    # quorum round was sent to it (and runs when it wakes up).
    nodes = [n for n in nodes if n.info or n.role == "redlock"]
    if not nodes:
        return []
    pattern = f"fc:{namespace}:*"

    def clean(node: Node) -> int | str:
        try:
            return clean_node(node, pattern, timeout)
        except Exception as exc:
            return describe(exc, timeout)

    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        outcomes = list(pool.map(clean, nodes))
    deleted = sum(n for n in outcomes if isinstance(n, int))
    cleaned = sum(isinstance(n, int) for n in outcomes)
    lines = [Line(OK, "cleanup", "-",
                  f"deleted {deleted} scratch keys ({pattern}) on {cleaned} node(s)")]
    for node, outcome in zip(nodes, outcomes, strict=True):
        if isinstance(outcome, str):
            lines.append(Line(WARN, "cleanup", node.name,
                              f"{outcome}: its scratch keys ({pattern}) expire by their TTL"))
    return lines


def verdict(lines: Sequence[Line]) -> str:
    """FAIL when a line FAILs (and is not tolerated), WARN when one WARNs, else OK."""
    if any(line.status == FAIL and not line.tolerated for line in lines):
        return FAIL
    if any(line.status == WARN or line.tolerated for line in lines):
        return WARN
    return OK


def run(args: argparse.Namespace) -> int:
    """Run every check; print the table (or JSON); exit status 1 on a FAIL verdict."""
    from fleetcache.cli.doctor_stampede import silence_fleetcache_logs  # noqa: PLC0415
    from fleetcache.cli.locks import parse_urls  # noqa: PLC0415

    redlock = parse_urls(args.redlock)
    if not args.redis and not redlock:
        log("doctor needs --redis URL, --redlock URL,URL,... or both")
        return 2
    silence_fleetcache_logs()
    namespace = f"doctor-{secrets.token_hex(4)}"
    meta: dict[str, Any] = {"namespace": namespace}
    if args.redis:
        meta.update(redis=where(args.redis), mode=None)
    if redlock:
        meta["redlock"] = [where(u) for u in redlock]
    written: list[Node] = []
    lines: list[Line] = []
    try:
        if args.redis:
            lines += check_deployment(args, namespace, written, meta)
        if redlock:
            lines += check_redlock(redlock, namespace, args.timeout, written)
    except KeyboardInterrupt:
        log(f"doctor interrupted: deleting the scratch keys (fc:{namespace}:*)")
        raise
    finally:
        lines += cleanup(written, namespace, args.timeout)
        for node in written:
            if node.client is not None:
                node.client.close()
    result = verdict(lines)
    if args.json:
        print_json({**meta, "verdict": result, "ok": result != FAIL,
                    "checks": [line.as_json() for line in lines]})
    else:
        print_report(meta, lines, result)
    return 1 if result == FAIL else 0


def print_report(meta: dict[str, Any], lines: Sequence[Line], result: str) -> None:
    """The table and the verdict."""
    what = []
    if "redis" in meta:
        mode = meta["mode"] or "unreachable"
        count = len(meta.get("nodes", [])) or 1
        what.append(f"{mode} Redis at {meta['redis']} ({count} node{'s' * (count > 1)})")
    if "redlock" in meta:
        what.append(f"Redlock on {len(meta['redlock'])} nodes")
    print(f"fleetcache doctor: {' + '.join(what)}; scratch namespace {meta['namespace']}")
    rows = [(line.status, line.check, line.node,
             line.detail + (" [tolerated: the Redlock quorum holds]" if line.tolerated else ""))
            for line in lines]
    headers = ("status", "check", "node", "detail")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:3])]
    print()
    for row in [headers, tuple("-" * w for w in (*widths, len(headers[3]))), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
              + "  " + row[3])
    failed = sum(line.status == FAIL and not line.tolerated for line in lines)
    tolerated = sum(line.tolerated for line in lines)
    warned = sum(line.status == WARN for line in lines)
    print()
    if result == FAIL:
        print(f"verdict: FAIL ({failed} check(s) failed): fix the FAIL lines before relying "
              "on fleetcache here")
    elif result == WARN:
        extra = (f"; {tolerated} FAIL line(s) of Redlock nodes tolerated: the quorum holds, "
                 "with less margin" if tolerated else "")
        print(f"verdict: WARN ({warned} warning(s){extra}): usable; read the WARN lines")
    else:
        print("verdict: OK: every check passed")
