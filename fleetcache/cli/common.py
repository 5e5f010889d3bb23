"""Helpers shared by the CLI commands: a throwaway Redis, clients, numbers and tables.

``redis_target(url)`` yields ``url`` when one is given; otherwise it starts a throwaway
``redis-server`` on a free 127.0.0.1 port (through :mod:`fleetcache.testing` when that is
available, else a plain child process) and stops it, by its PID, when the block exits.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fleetcache.clusters import primaries, scan_reply
from fleetcache.testing import redis_nodes

LOOPBACK = "127.0.0.1"
#: Socket timeout of the clients the CLI opens (seconds).
CLIENT_TIMEOUT = 5.0


def log(msg: str) -> None:
    """Print a diagnostic line on stderr (stdout is kept for results and --json)."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- Redis


def connect(url: str, **overrides: Any) -> redis.Redis:
    """A client for ``url`` with bounded timeouts and no retry storm (bytes responses)."""
    options: dict[str, Any] = {
        "socket_timeout": CLIENT_TIMEOUT,
        "socket_connect_timeout": CLIENT_TIMEOUT,
        "retry": Retry(NoBackoff(), 1),
    }
    options.update(overrides)
    client: redis.Redis = redis.Redis.from_url(url, **options)
    return client


def connect_any(url: str) -> redis.Redis | redis.RedisCluster:
    """:func:`connect`, or a cluster client when ``url`` names a Redis Cluster node."""
    r = connect(url)
    try:
        enabled = r.info("cluster").get("cluster_enabled")
    except redis.RedisError:
        return r  # let the command report the failure on its first real use
    if not enabled:
        return r
    r.close()
    options: dict[str, Any] = {"socket_timeout": CLIENT_TIMEOUT,
                               "socket_connect_timeout": CLIENT_TIMEOUT}
    cluster: redis.RedisCluster = redis.RedisCluster.from_url(url, **options)
    return cluster


def connect_cluster(url: str, **overrides: Any) -> redis.RedisCluster:
    """A Redis Cluster client for ``url`` (any node of the cluster) with bounded timeouts.

    ValueError when the node at ``url`` is not cluster-enabled; Redis errors when it does
    not answer.
    """
    probe = connect(url)
    try:
        enabled = probe.info("cluster").get("cluster_enabled")
    finally:
        probe.close()
    if not enabled:
        raise ValueError(f"{url} is not a Redis Cluster node (cluster_enabled:0)")
    options: dict[str, Any] = {"socket_timeout": CLIENT_TIMEOUT,
                               "socket_connect_timeout": CLIENT_TIMEOUT}
    options.update(overrides)
    cluster: redis.RedisCluster = redis.RedisCluster.from_url(url, **options)
    return cluster


def master_clients(r: redis.Redis | redis.RedisCluster) -> list[tuple[str, redis.Redis]]:
    """``(name, client)`` of every master: ``("", r)`` on a single node, else each master's
    node client (named ``host:port``), the masters of :func:`fleetcache.clusters.primaries`."""
    found: list[tuple[str, redis.Redis]] = []
    for node in primaries(r):
        if node is None:
            assert isinstance(r, redis.Redis)
            found.append(("", r))
        else:
            assert isinstance(r, redis.RedisCluster)
            found.append((str(node.name), r.get_redis_connection(node)))
    return found


def command_counts(r: redis.Redis | redis.RedisCluster) -> dict[tuple[str, str], int]:
    """``INFO commandstats`` of every master: ``(master name, command) -> calls`` (the name
    is ``""`` on a single node; subcommands read ``cluster|slots``)."""
    counts: dict[tuple[str, str], int] = {}
    for name, client in master_clients(r):
        stats: dict[str, Any] = client.info("commandstats")
        for key, value in stats.items():
            counts[name, key.removeprefix("cmdstat_")] = int(value["calls"])
    return counts


def scan_keys(r: redis.Redis | redis.RedisCluster, pattern: str) -> Iterator[bytes]:
    """Every key matching ``pattern``: SCAN of the node, or of every master in turn."""
    for node in primaries(r):
        if node is None:
            assert isinstance(r, redis.Redis)
            yield from r.scan_iter(match=pattern, count=1000)
            continue
        cursor = -1
        while cursor != 0:
            cursor, keys = scan_reply(
                r.scan(cursor=max(cursor, 0), match=pattern, count=1000, target_nodes=node)
            )
            yield from keys


def _unlink(r: redis.Redis | redis.RedisCluster, keys: list[bytes]) -> int:
    if isinstance(r, redis.RedisCluster):  # keys of many slots: one UNLINK each, pipelined
        pipe = r.pipeline()
        for key in keys:
            pipe.unlink(key)
        return sum(int(n) for n in pipe.execute())
    return int(r.unlink(*keys))


def drop_keys(r: redis.Redis | redis.RedisCluster, *patterns: str) -> int:
    """Delete every key matching ``patterns`` (SCAN + UNLINK; on a cluster, of every
    master); return how many went.

    Best effort (it cleans up after a run): Redis errors are logged, not raised.
    """
    dropped = 0
    try:
        for pattern in patterns:
            batch: list[bytes] = []
            for key in scan_keys(r, pattern):
                batch.append(key)
                if len(batch) >= 500:
                    dropped += _unlink(r, batch)
                    batch.clear()
            if batch:
                dropped += _unlink(r, batch)
    except (redis.RedisError, OSError) as exc:
        log(f"could not clean up {patterns}: {type(exc).__name__}: {exc}")
    return dropped


def fresh_namespace(prefix: str) -> str:
    """A namespace no earlier run used: ``prefix-<unix time>-<random hex>``."""
    return f"{prefix}-{int(time.time())}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def local_nodes(n: int) -> Iterator[list[str]]:
    """Start ``n`` throwaway local Redis nodes and yield their URLs; stop them on exit.

    They come from :mod:`fleetcache.testing`'s local provider (``redis-server`` processes
    on free loopback ports, stopped by PID, also when the block raises).
    """
    if n < 1:
        yield []
        return
    with redis_nodes(n, kind="local") as nodes:
        yield [str(node.url) for node in nodes]


@contextlib.contextmanager
def local_redis() -> Iterator[str]:
    """Start a throwaway local Redis and yield its URL; stop it when the block exits."""
    with local_nodes(1) as urls:
        yield urls[0]


@contextlib.contextmanager
def redis_target(url: str | None, *, quiet: bool = False) -> Iterator[str]:
    """Yield ``url``, or the URL of a throwaway local Redis started for the block."""
    if url:
        yield url
        return
    with local_redis() as local:
        if not quiet:
            log(f"started a throwaway Redis at {local} (pass --redis URL to use your own)")
        yield local


# --------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within [0, 100], not {p}")
    if not values:
        return math.nan
    data = sorted(values)
    rank = (len(data) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def ms(seconds: float, digits: int = 1) -> str:
    """Seconds formatted as milliseconds, e.g. ``'12.3 ms'``; ``'-'`` for NaN."""
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:.{digits}f} ms"


def us(seconds: float) -> str:
    """Seconds formatted as microseconds, e.g. ``'85.2 µs'``."""
    return "-" if math.isnan(seconds) else f"{seconds * 1e6:.1f} µs"


def pct(fraction: float) -> str:
    """A fraction formatted as a percentage, e.g. ``'87.5 %'``."""
    return "-" if math.isnan(fraction) else f"{fraction * 100:.1f} %"


# --------------------------------------------------------------------------- output


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None
) -> None:
    """Print :func:`format_table` on stdout, under an optional title."""
    if title:
        print(title)
    print(format_table(headers, rows))


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout (NaN becomes null)."""
    print(json.dumps(_nan_to_none(obj), indent=2, sort_keys=False))


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


class Progress:
    """Progress on stderr: one updating line on a TTY, a line every few seconds otherwise."""

    def __init__(
        self, stream: TextIO | None = None, every: float = 2.0, enabled: bool = True
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.enabled = enabled
        self._last = -math.inf
        self._width = 0

    def update(self, text: str, *, force: bool = False) -> None:
        """Show ``text`` (rate-limited to every ``every`` seconds off a TTY)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
            self.stream.flush()
        elif force or now - self._last >= self.every:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now

    def done(self, text: str) -> None:
        """Show the final state and end the line."""
        if not self.enabled:
            return
        if self.tty:
            self.update(text)
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
        else:
            self.update(text, force=True)


def cache_policy(freshness: bool) -> Any:
    """The cache's policy in ``bench hit``: the defaults, or every freshness feature on
    (hot entries then run the hot-key script on each hit, sliding their freshness)."""
    from fleetcache import Policy  # noqa: PLC0415

    if not freshness:
        return Policy()
    return Policy(stale_ttl=600, early_refresh=1.0, hot_threshold=10)


def reap(procs: Iterable[Any], timeout: float = 10.0) -> None:
    """Join worker processes, killing any still alive after ``timeout`` seconds each."""
    for p in procs:
        p.join(timeout=timeout)
        if p.is_alive():
            p.kill()
            p.join()
