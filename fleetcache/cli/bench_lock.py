"""``bench lock``: what each lock backend costs, alone and under contention.

(a) Uncontended: per series, ``--ops`` acquire + release of a free lock, timed as one
block; ``--rounds`` rounds whose order rotates and alternates direction.  Reported: the
median over rounds of the per-op time and its ratio to the raw baseline (``SET NX PX`` +
EVALSHA compare-and-delete on a plain client).  Series: SetNxLock, FencedLock,
python-redis-lock through RedisLockAdapter, redis-py's ``Lock``, Redlock on N throwaway
nodes per ``--redlock`` count, and pottery's Redlock as a reference when it is installed
(timed on a fifth of ``--ops``: it is slow).  ``--try-acquire`` adds ``try_acquire`` +
``release`` series for fleetcache's backends, to show what ``acquire``'s retry loop costs.

(b) Contended: ``--contended-processes`` spawned processes hammer one lock name for
``--contended-seconds`` per backend (see :mod:`fleetcache.cli.lock_worker`).

Exit status 1 when an uncontended op failed, or a contended run saw two holders at once,
fences that did not strictly increase, or errors.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from fleetcache.cli.common import (
    Progress,
    connect,
    drop_keys,
    format_table,
    fresh_namespace,
    log,
    ms,
    print_json,
    redis_target,
    us,
)
from fleetcache.cli.lock_series import SeriesError, build_series, round_order, timed
from fleetcache.cli.lock_worker import Contended, run_contended
from fleetcache.cli.locks import lock_nodes, parse_counts, parse_urls, sync_clients

HELP = "lock backends: uncontended acquire+release vs raw SET NX, and a contended run"
_WARMUP = 200
_MIN_OPS = 10
_BACKENDS = ("setnx", "fenced", "redlock", "adapter")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench lock``."""
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: start a local one)")
    parser.add_argument("--rounds", type=int, default=15, help="uncontended rounds (15)")
    parser.add_argument("--ops", type=int, default=2000, help="ops per series per round (2000)")
    parser.add_argument(
        "--redlock",
        default="3,5",
        metavar="N[,M]",
        help="Redlock node counts; that many throwaway nodes are started ('3,5'; 0: none)",
    )
    parser.add_argument(
        "--redlock-urls", metavar="URL,...", help="use these Redlock nodes instead of starting any"
    )
    parser.add_argument(
        "--try-acquire",
        action="store_true",
        help="also time try_acquire + release of fleetcache's backends (no retry loop)",
    )
    parser.add_argument("--contended-processes", type=int, default=6, help="processes (6)")
    parser.add_argument(
        "--contended-seconds", type=float, default=5.0, help="seconds per backend (5; 0: skip)"
    )
    parser.add_argument(
        "--contended-backends",
        default="setnx,fenced,redlock",
        help=f"comma-separated, of {', '.join(_BACKENDS)} ('setnx,fenced,redlock'; redlock "
        "runs on the smallest --redlock count, 3 when listed)",
    )
    parser.add_argument("--contended-ttl", type=float, default=5.0, help="lease TTL (5 s)")
    parser.add_argument("--contended-wait", type=float, default=2.0, help="acquire wait (2 s)")
    parser.add_argument(
        "--contended-hold", type=float, default=0.0, help="extra sleep while holding (0 s)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def run(args: argparse.Namespace) -> int:
    """Run the bench; exit status 1 on a failed op, a violation or a fence inversion."""
    try:
        counts = parse_counts(args.redlock)
        backends = [b.strip() for b in args.contended_backends.split(",") if b.strip()]
        if any(b not in _BACKENDS for b in backends):
            raise ValueError(f"--contended-backends: expected some of {_BACKENDS}")
        if min(args.rounds, args.ops, args.contended_processes) < 1:
            raise ValueError("--rounds, --ops and --contended-processes must be >= 1")
        urls = parse_urls(args.redlock_urls)
        if urls and len(urls) < max(counts, default=0):
            raise ValueError(f"--redlock {args.redlock} needs {max(counts)} --redlock-urls")
    except ValueError as exc:
        log(str(exc))
        return 2
    if "redlock" in backends and not counts:
        backends.remove("redlock")
    namespace = fresh_namespace("bench-lock")
    prefix = f"fcbench:{namespace}:"
    with (
        redis_target(args.redis, quiet=args.json) as url,
        lock_nodes(max(counts, default=0), urls, quiet=args.json) as node_urls,
    ):
        r = connect(url)
        clients = {n: sync_clients(node_urls[:n]) for n in counts}
        report: dict[str, Any] = {"config": _config(args, counts, backends), "namespace": namespace}
        try:
            report["uncontended"] = _uncontended(args, r, clients, prefix)
            contended_n = 3 if 3 in counts else min(counts, default=0)
            report["contended"] = [
                run_contended(
                    _setup(args, b, url, node_urls[:contended_n], prefix), args.contended_processes
                )
                for b in (backends if args.contended_seconds > 0 else [])
            ]
        except SeriesError as exc:
            log(f"bench lock: {exc}")
            return 1
        finally:
            # "{": a fence counter of a name without a hash tag (fleetcache.locking.slots)
            patterns = [f"{p}{prefix}*" for p in ("", "{", "lock:", "lock-signal:", "redlock:")]
            for c in [r, *(c for cs in clients.values() for c in cs)]:
                drop_keys(c, *patterns)
                c.close()
    _print(args, report)
    bad = [
        c
        for c in report["contended"]
        if c["violations"] or c["fence_inversions"] or c["errors"] or c["occupancy_after"]
    ]
    return 1 if bad else 0


def _config(args: argparse.Namespace, counts: list[int], backends: list[str]) -> dict[str, Any]:
    return {
        "rounds": args.rounds,
        "ops": args.ops,
        "redlock_nodes": counts,
        "contended_processes": args.contended_processes,
        "contended_seconds": args.contended_seconds,
        "contended_backends": backends,
        "contended_ttl_s": args.contended_ttl,
        "contended_wait_s": args.contended_wait,
        "contended_hold_s": args.contended_hold,
    }


def _setup(
    args: argparse.Namespace, backend: str, url: str, redlock_urls: list[str], prefix: str
) -> Contended:
    return Contended(
        backend=backend,
        url=url,
        lock_urls=tuple(redlock_urls) if backend == "redlock" else (url,),
        name=f"{prefix}contended:{backend}",
        seconds=args.contended_seconds,
        ttl=args.contended_ttl,
        wait=args.contended_wait,
        hold=args.contended_hold,
    )


def _uncontended(
    args: argparse.Namespace, r: Any, clients: dict[int, list[Any]], prefix: str
) -> dict[str, Any]:
    series = build_series(r, clients, prefix, try_acquire=args.try_acquire)
    by_name = {s.name: s for s in series}
    names = list(by_name)
    progress = Progress(enabled=not args.json)
    ops = {s.name: max(_MIN_OPS, round(args.ops * s.ops_scale)) for s in series}
    for s in series:
        timed(s.op, min(_WARMUP, ops[s.name]))
    per_op: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.rounds):
        for name in round_order(names, i):
            per_op[name].append(timed(by_name[name].op, ops[name]))
        progress.update(f"uncontended round {i + 1}/{args.rounds}")
    progress.done(f"uncontended: {args.rounds} rounds x {len(names)} series x {args.ops} ops")
    raw = statistics.median(per_op[names[0]])
    rows = []
    for name in names:
        med = statistics.median(per_op[name])
        target = by_name[name].target
        rows.append(
            {
                "series": name,
                "nodes": by_name[name].nodes,
                "ops": ops[name],
                "median_op_s": med,
                "min_op_s": min(per_op[name]),
                "max_op_s": max(per_op[name]),
                "ratio_vs_raw": med / raw,
                "target": target,
                "meets_target": None if target is None else med / raw <= target,
                "per_round_op_s": per_op[name],
            }
        )
    return {"baseline": names[0], "series": rows}


def _print(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json:
        print_json(report)
        return
    un = report["uncontended"]
    print(
        f"\nbench lock (a) uncontended acquire + release: {args.rounds} rounds x "
        f"{args.ops} ops, order rotating and alternating; median over rounds"
    )
    rows = []
    for s in un["series"]:
        verdict = (
            "-"
            if s["target"] is None
            else (f"{'meets' if s['meets_target'] else 'MISSES'} <= {s['target']:g}x")
        )
        rows.append(
            [
                s["series"],
                s["nodes"],
                us(s["median_op_s"]),
                f"{us(s['min_op_s'])} - {us(s['max_op_s'])}",
                f"{s['ratio_vs_raw']:.2f}x",
                verdict,
            ]
        )
    print(
        format_table(
            ["series", "nodes", "median per op", "round min - max", "vs raw", "target"], rows
        )
    )
    pottery = [s for s in un["series"] if s["series"].startswith("pottery")]
    if pottery:
        print(f"(pottery, a reference, is timed on {pottery[0]['ops']} ops per round)")
    else:
        print("(pottery not installed or no Redlock nodes: its reference row is skipped)")
    if not report["contended"]:
        return
    print(
        f"\nbench lock (b) contended: {args.contended_processes} processes x "
        f"{args.contended_seconds:g} s on one name per backend, ttl {args.contended_ttl:g} s, "
        f"wait {args.contended_wait:g} s"
    )
    rows = []
    for c in report["contended"]:
        fences = (
            "n/a"
            if c["fences_increasing"] is None
            else ("yes" if c["fences_increasing"] else f"NO ({c['fence_inversions']})")
        )
        rows.append(
            [
                f"{c['backend']} ({c['nodes']} node{'s' if c['nodes'] > 1 else ''})",
                f"{c['acquisitions_per_s']:,.0f}",
                ms(c["wait_p50_s"], 2),
                ms(c["wait_p99_s"]),
                ms(c["wait_max_s"]),
                c["violations"],
                c["give_ups"],
                c["lost_releases"],
                c["errors"],
                fences,
            ]
        )
    print(
        format_table(
            [
                "backend",
                "acq/s",
                "wait p50",
                "wait p99",
                "wait max",
                "violations",
                "give-ups",
                "lost",
                "errors",
                "fences increase",
            ],
            rows,
        )
    )
    for c in report["contended"]:
        if c["last_error"]:
            print(f"{c['backend']}: last error: {c['last_error']}")
    print(
        "violations: occupancy counter INCR saw a value other than 1 (two holders at once);\n"
        "lost: release found the lease already gone; fences checked in holding order"
    )
