"""``stats``: what a namespace holds in Redis, by SCAN of ``fc:<namespace>:*``.

Keys are classified by the layout of :mod:`fleetcache.core.keys` (entries, locks, error
records, fences, the generation key) and split between the current generation and older
ones (unreachable since an ``invalidate``, waiting for their TTL).  A key without a TTL is
reported: fleetcache never leaves one.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from fleetcache.cli.common import (
    connect_any,
    format_table,
    log,
    percentile,
    print_json,
    scan_keys,
)

HELP = "key counts and TTLs of a namespace (SCAN of fc:<namespace>:*)"
KINDS = ("entries", "locks", "error records", "fences", "generation key", "other")
_SUFFIX_KIND = {None: "entries", "lock": "locks", "err": "error records", "fence": "fences"}
_ENTRY_RE = re.compile(r"^(\d+):\{[0-9a-f]{64}\}(?::(lock|err|fence))?$")
_BATCH = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stats``."""
    parser.add_argument("--redis", metavar="URL", required=True, help="Redis URL")
    parser.add_argument("--namespace", required=True, help="the cache's namespace")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


@dataclass
class KindStats:
    """Counts and TTLs (seconds) of one kind of key."""

    current: int = 0
    older: int = 0
    no_ttl: int = 0
    ttls: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "current_generation": self.current,
            "older_generations": self.older,
            "no_ttl": self.no_ttl,
            "ttl_min_s": min(self.ttls, default=float("nan")),
            "ttl_p50_s": percentile(self.ttls, 50),
            "ttl_max_s": max(self.ttls, default=float("nan")),
        }


def classify(namespace: str, key: str, generation: int | None) -> tuple[str, bool]:
    """(kind, in the current generation) of ``key`` of ``namespace``."""
    rest = key.removeprefix(f"fc:{namespace}:")
    if rest == "gen":
        return "generation key", True
    match = _ENTRY_RE.match(rest)
    if match is None:
        return "other", True
    return _SUFFIX_KIND[match.group(2)], generation is not None and int(
        match.group(1)
    ) == generation


def _batches(it: Iterable[bytes], size: int) -> Iterable[list[bytes]]:
    batch: list[bytes] = []
    for item in it:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def collect(r: redis.Redis | redis.RedisCluster, namespace: str) -> dict[str, Any]:
    """SCAN the namespace (every master of a cluster) and summarise it."""
    from fleetcache.core.keys import KeyLayout, validate_namespace  # noqa: PLC0415

    layout = KeyLayout(validate_namespace(namespace))
    raw_gen = r.get(layout.gen)
    generation = int(raw_gen) if raw_gen is not None else None
    kinds = {kind: KindStats() for kind in KINDS}
    total = 0
    for batch in _batches(scan_keys(r, layout.pattern), _BATCH):
        pipe = r.pipeline(transaction=False)
        for key in batch:
            pipe.pttl(key)
        for key, pttl in zip(batch, pipe.execute(), strict=True):
            if pttl == -2:  # expired between SCAN and PTTL
                continue
            total += 1
            kind, current = classify(namespace, key.decode(errors="replace"), generation)
            stats = kinds[kind]
            if current:
                stats.current += 1
            else:
                stats.older += 1
            if pttl == -1:
                stats.no_ttl += 1
            else:
                stats.ttls.append(pttl / 1000.0)
    return {
        "namespace": namespace,
        "generation": generation,
        "keys": total,
        "kinds": {kind: s.summary() for kind, s in kinds.items()},
    }


def _ttl(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.1f} s"


def run(args: argparse.Namespace) -> int:
    """Print the namespace summary; exit status 1 when a key has no TTL."""
    r = connect_any(args.redis)
    try:
        report = collect(r, args.namespace)
    except (redis.RedisError, OSError) as exc:
        log(f"cannot read {args.redis}: {type(exc).__name__}: {exc}")
        return 1
    except ValueError as exc:
        log(str(exc))
        return 2
    finally:
        r.close()
    no_ttl = sum(k["no_ttl"] for k in report["kinds"].values())
    if args.json:
        print_json(report)
    else:
        gen = report["generation"]
        print(
            f"namespace {args.namespace!r}: {report['keys']} keys, generation "
            f"{gen if gen is not None else '(none: never used, or expired)'}"
        )
        rows = [
            [
                kind,
                s["current_generation"],
                s["older_generations"],
                _ttl(s["ttl_min_s"]),
                _ttl(s["ttl_p50_s"]),
                _ttl(s["ttl_max_s"]),
                s["no_ttl"],
            ]
            for kind, s in report["kinds"].items()
            if s["current_generation"] or s["older_generations"]
        ]
        if rows:
            print(
                format_table(
                    [
                        "kind",
                        "current gen",
                        "older gens",
                        "ttl min",
                        "ttl p50",
                        "ttl max",
                        "no ttl",
                    ],
                    rows,
                )
            )
        if no_ttl:
            print(f"WARNING: {no_ttl} key(s) without a TTL (fleetcache never leaves one)")
    return 1 if no_ttl else 0
