"""``invalidate`` (a namespace, fleet-wide) and ``purge`` (delete the keys of superseded
generations now).  ``doctor`` lives in :mod:`fleetcache.cli.doctor`."""

from __future__ import annotations

import argparse

import redis

from fleetcache.cli.common import Progress, connect_any, log, print_json

HELP_invalidate = "make every entry of a namespace unreachable, fleet-wide (Cache.invalidate)"
HELP_purge = "delete the keys of a namespace's superseded generations now (SCAN + UNLINK)"


def add_arguments_invalidate(parser: argparse.ArgumentParser) -> None:
    """Options of ``invalidate``."""
    parser.add_argument("--redis", metavar="URL", required=True, help="Redis URL")
    parser.add_argument("--namespace", required=True, help="the namespace to invalidate")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def run_invalidate(args: argparse.Namespace) -> int:
    """Move the namespace to a new generation and print the old and new ones."""
    from fleetcache import Cache, FleetcacheError  # noqa: PLC0415
    from fleetcache.core.keys import KeyLayout  # noqa: PLC0415

    r = connect_any(args.redis)
    try:
        cache = Cache(r, namespace=args.namespace)
        old = r.get(KeyLayout(cache.namespace).gen)
        new = cache.invalidate()
        cache.close()
    except (TypeError, ValueError) as exc:
        log(str(exc))
        return 2
    except (FleetcacheError, redis.RedisError, OSError) as exc:
        log(f"invalidate failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        r.close()
    old_gen = int(old) if old is not None else None
    if args.json:
        print_json({"namespace": args.namespace, "old_generation": old_gen, "new_generation": new})
    else:
        print(
            f"namespace {args.namespace!r} invalidated: generation "
            f"{old_gen if old_gen is not None else '(none)'} -> {new}; old entries are "
            "unreachable now and expire by their TTL"
        )
    return 0


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _generation(raw: bytes | str) -> int | None:
    """The generation a ``fc:<ns>:gen`` value holds: a positive integer, else None."""
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


def add_arguments_purge(parser: argparse.ArgumentParser) -> None:
    """Options of ``purge``."""
    parser.add_argument("--redis", metavar="URL", required=True, help="Redis URL")
    parser.add_argument("--namespace", required=True, help="the namespace to purge")
    parser.add_argument(
        "--batch", type=_positive_int, default=500, metavar="N",
        help="SCAN COUNT and the most keys per UNLINK (default: 500)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def run_purge(args: argparse.Namespace) -> int:
    """Delete every key of the namespace's generations below the current one; print the
    count (progress on stderr).  A namespace without a generation key has nothing to purge."""
    from fleetcache import FleetcacheError  # noqa: PLC0415
    from fleetcache.core._sync.purge import purge  # noqa: PLC0415
    from fleetcache.core.keys import KeyLayout, validate_namespace  # noqa: PLC0415

    try:
        layout = KeyLayout(validate_namespace(args.namespace))
    except (TypeError, ValueError) as exc:
        log(str(exc))
        return 2
    progress = Progress()
    counts = [0, 0]  # scanned, deleted

    def report(scanned: int, deleted: int) -> None:
        counts[:] = [scanned, deleted]
        progress.update(f"purge {args.namespace!r}: scanned {scanned} keys, deleted {deleted}")

    r = connect_any(args.redis)
    try:
        raw = r.get(layout.gen)
        current = None if raw is None else _generation(raw)
        if current is None and raw is not None:
            log(f"{layout.gen} holds {raw!r}, not a generation: nothing purged")
            return 1
        if current is not None:
            counts[1] = purge(r, layout, current, batch=args.batch, progress=report)
    except (FleetcacheError, redis.RedisError, OSError) as exc:
        log(f"purge failed after scanning {counts[0]} keys and deleting {counts[1]}: "
            f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        r.close()
    if current is not None:
        progress.done(f"purge {args.namespace!r}: scanned {counts[0]} keys, deleted {counts[1]}")
    if args.json:
        print_json({"namespace": args.namespace, "generation": current,
                    "scanned": counts[0], "deleted": counts[1]})
    elif current is None:
        print(f"namespace {args.namespace!r} has no generation key ({layout.gen}): "
              "nothing to purge")
    else:
        print(f"namespace {args.namespace!r}: deleted {counts[1]} keys of generations "
              f"below {current}")
    return 0
