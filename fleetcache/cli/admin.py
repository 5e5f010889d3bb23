"""``invalidate`` (a namespace, fleet-wide), ``purge`` (delete the keys of superseded
generations now) and ``doctor`` (is this Redis fit for fleetcache?)."""

from __future__ import annotations

import argparse
import secrets
import time
from importlib import resources

import redis

from fleetcache.cli.common import Progress, connect, log, print_json

HELP_invalidate = "make every entry of a namespace unreachable, fleet-wide (Cache.invalidate)"
HELP_purge = "delete the keys of a namespace's superseded generations now (SCAN + UNLINK)"
HELP_doctor = "check a Redis server: version >= 6.2, Lua, pub/sub, fleetcache's scripts"
MIN_VERSION = (6, 2)
_PUBSUB_TIMEOUT = 2.0


def add_arguments_invalidate(parser: argparse.ArgumentParser) -> None:
    """Options of ``invalidate``."""
    parser.add_argument("--redis", metavar="URL", required=True, help="Redis URL")
    parser.add_argument("--namespace", required=True, help="the namespace to invalidate")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def run_invalidate(args: argparse.Namespace) -> int:
    """Move the namespace to a new generation and print the old and new ones."""
    from fleetcache import Cache, FleetcacheError  # noqa: PLC0415
    from fleetcache.core.keys import KeyLayout  # noqa: PLC0415

    r = connect(args.redis)
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

    r = connect(args.redis)
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


def add_arguments_doctor(parser: argparse.ArgumentParser) -> None:
    """Options of ``doctor``."""
    parser.add_argument("--redis", metavar="URL", required=True, help="Redis URL")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def parse_version(text: str) -> tuple[int, ...]:
    """``'7.0.15'`` -> ``(7, 0, 15)`` (non-numeric parts are dropped)."""
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _shipped_scripts() -> dict[str, str]:
    """Every Lua script fleetcache ships, by ``package/name``."""
    scripts: dict[str, str] = {}
    for package in ("fleetcache.core", "fleetcache.locking"):
        for entry in resources.files(package).joinpath("lua").iterdir():
            if entry.name.endswith(".lua"):
                scripts[f"{package.split('.')[-1]}/{entry.name}"] = entry.read_text("utf-8")
    return scripts


class Doctor:
    """Runs the checks and keeps ``(status, check, detail)`` lines."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.r = connect(url, socket_timeout=_PUBSUB_TIMEOUT, socket_connect_timeout=2.0)
        self.lines: list[tuple[str, str, str]] = []

    def add(self, status: str, check: str, detail: str) -> None:
        """Record one line: status is OK, WARN or FAIL."""
        self.lines.append((status, check, detail))

    def run(self) -> None:
        """Every check; stops after the first when the server cannot be reached."""
        start = time.perf_counter()
        try:
            self.r.ping()
        except (redis.RedisError, OSError) as exc:
            self.add("FAIL", "connect", f"{type(exc).__name__}: {exc}")
            return
        self.add("OK", "connect", f"PING {1000 * (time.perf_counter() - start):.1f} ms")
        for check in (self.version, self.lua, self.scripts, self.pubsub):
            try:
                check()
            except (redis.RedisError, OSError) as exc:
                self.add("FAIL", check.__name__, f"{type(exc).__name__}: {exc}")

    def version(self) -> None:
        """Server version >= 6.2; sharded pub/sub (7.0) reported."""
        info = self.r.info("server")
        text = str(info.get("redis_version", "?"))
        version = parse_version(text)
        ok = version[:2] >= MIN_VERSION
        mode = info.get("redis_mode", "standalone")
        self.add(
            "OK" if ok else "FAIL",
            "version",
            f"Redis {text} ({mode}); fleetcache needs >= {'.'.join(map(str, MIN_VERSION))}",
        )
        if ok and version[:1] < (7,):
            self.add("WARN", "version", "Redis < 7.0: no sharded pub/sub (fine standalone)")

    def lua(self) -> None:
        """EVAL runs and returns its argument."""
        token = secrets.token_hex(8)
        got = self.r.eval("return ARGV[1]", 0, token)
        ok = got in (token, token.encode())
        self.add("OK" if ok else "FAIL", "lua", f"EVAL returned {got!r}")

    def scripts(self) -> None:
        """Every shipped script compiles (SCRIPT LOAD)."""
        failed: list[str] = []
        scripts = _shipped_scripts()
        for name, source in scripts.items():
            try:
                self.r.script_load(source)
            except redis.ResponseError as exc:
                failed.append(f"{name}: {exc}")
        if failed:
            self.add("FAIL", "scripts", "; ".join(failed))
        else:
            self.add("OK", "scripts", f"{len(scripts)} fleetcache Lua scripts load")

    def pubsub(self) -> None:
        """A message published on one connection arrives on a subscribed one."""
        channel = f"fc:doctor:{secrets.token_hex(6)}"
        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(channel)
            deadline = time.monotonic() + _PUBSUB_TIMEOUT
            while not pubsub.subscribed and time.monotonic() < deadline:
                pubsub.get_message(timeout=0.05)
            start = time.perf_counter()
            receivers = self.r.publish(channel, b"ping")
            while time.monotonic() < deadline:
                msg = pubsub.get_message(timeout=0.05)
                if msg is not None and msg.get("data") == b"ping":
                    self.add(
                        "OK",
                        "pubsub",
                        f"delivered in {1000 * (time.perf_counter() - start):.1f} ms",
                    )
                    return
            self.add(
                "FAIL",
                "pubsub",
                f"no message within {_PUBSUB_TIMEOUT:g} s ({receivers} receiver(s) at PUBLISH)",
            )
        finally:
            pubsub.close()


def run_doctor(args: argparse.Namespace) -> int:
    """Print one OK/WARN/FAIL line per check; exit status 1 when any check failed."""
    doctor = Doctor(args.redis)
    try:
        doctor.run()
    finally:
        doctor.r.close()
    failed = any(status == "FAIL" for status, _, _ in doctor.lines)
    if args.json:
        print_json(
            {
                "redis": args.redis,
                "ok": not failed,
                "checks": [{"status": s, "check": c, "detail": d} for s, c, d in doctor.lines],
            }
        )
    else:
        for status, check, detail in doctor.lines:
            print(f"{status:<5} {check:<8} {detail}")
        print("FAIL: Redis is not fit for fleetcache" if failed else "all checks passed")
    return 1 if failed else 0
