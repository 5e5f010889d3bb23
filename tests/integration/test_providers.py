"""The Redis node providers and the fault proxy, exercised against real servers.

Provider tests run for `local` always and for `containers` when a Docker engine answers
(and fail, rather than skip, when FLEETCACHE_REDIS=containers asks for it but none does).
Proxy tests sit in front of the session's node, from whichever provider the run uses.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from fleetcache.testing import (
    FaultProxy,
    NodeError,
    NodeProvider,
    RedisNode,
    get_provider,
    port_is_open,
    redis_nodes,
)
from fleetcache.testing.containers import (
    _pid_namespace_id,
    docker_available,
    docker_client,
)
from fleetcache.testing.containers import reap_orphans as reap_containers
from fleetcache.testing.image import ensure_image
from fleetcache.testing.local import reap_orphans as reap_processes
from fleetcache.testing.nodes import find_redis_server, free_port, make_client, wait_port_open

Factory = Callable[..., list[RedisNode]]


@pytest.fixture(scope="module", params=["local", "containers"])
def provider(request: pytest.FixtureRequest) -> Iterator[NodeProvider]:
    """Each provider kind in turn; containers skipped when no Docker engine answers."""
    kind: str = request.param
    if kind == "containers" and not docker_available():
        if os.environ.get("FLEETCACHE_REDIS", "").lower() == "containers":
            pytest.fail("FLEETCACHE_REDIS=containers but no Docker engine answers")
        pytest.skip("no Docker engine answers a ping")
    with get_provider(kind) as prov:
        yield prov


@pytest.fixture
def nodes(provider: NodeProvider) -> Iterator[Factory]:
    """A factory of nodes from `provider`, all stopped after the test."""
    made: list[RedisNode] = []

    def factory(n: int = 1, extra_args: tuple[str, ...] = ()) -> list[RedisNode]:
        started = provider.start(n, extra_args)
        made.extend(started)
        return started

    yield factory
    for node in made:
        node.stop()


def _dead_pid() -> int:
    """The PID of a process that has already exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_start_gives_distinct_loopback_nodes_answering(
    provider: NodeProvider, nodes: Factory
) -> None:
    """start(3) yields three running nodes on distinct 127.0.0.1 ports, each answering PING."""
    started = nodes(3)
    assert len({node.port for node in started}) == 3
    for node in started:
        assert node.host == "127.0.0.1"
        assert node.url == f"redis://127.0.0.1:{node.port}/0"
        assert node.kind == provider.kind
        assert node.is_running
        with node.client() as client:
            assert client.ping()


def test_nodes_run_without_persistence_and_take_extra_args(nodes: Factory) -> None:
    """Nodes have RDB and AOF off, and extra_args reach the server's configuration."""
    (node,) = nodes(1, ("--maxmemory", "12mb"))
    with node.client(decode_responses=True) as client:
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("maxmemory") == {"maxmemory": str(12 * 1024 * 1024)}


def test_stop_frees_the_port(nodes: Factory) -> None:
    """After stop() the port is closed and can be bound again; a second stop is a no-op."""
    (node,) = nodes(1)
    node.stop()
    assert not node.is_running
    assert not port_is_open(node.host, node.port)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((node.host, node.port))
    node.stop()


def test_kill_crashes_the_node(nodes: Factory) -> None:
    """kill() closes the port at once and a connected client gets a ConnectionError."""
    (node,) = nodes(1)
    client = node.client()
    assert client.ping()
    node.kill()
    assert not node.is_running
    assert not port_is_open(node.host, node.port)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()


@pytest.mark.slow
def test_pause_hangs_and_resume_answers(nodes: Factory) -> None:
    """A paused node makes PING time out while still running; after resume() it answers."""
    (node,) = nodes(1)
    client = node.client(socket_timeout=0.3)
    assert client.ping()
    node.pause()
    assert node.is_running
    with pytest.raises(redis.TimeoutError):
        client.ping()
    node.resume()
    assert client.ping()
    client.close()


def test_restart_comes_back_empty_on_the_same_port(nodes: Factory) -> None:
    """restart() brings the node back on the same port with no data."""
    (node,) = nodes(1)
    port = node.port
    with node.client() as client:
        client.set("k", "v")
    node.restart()
    assert node.port == port
    with node.client() as client:
        assert client.get("k") is None
        assert client.dbsize() == 0


def test_restart_revives_killed_and_paused_nodes(nodes: Factory) -> None:
    """A killed node and a paused node both answer again after restart()."""
    killed, paused = nodes(2)
    killed.kill()
    paused.pause()
    for node in (killed, paused):
        node.restart()
        assert node.is_running
        with node.client() as client:
            assert client.ping()


def test_stop_of_a_paused_node_completes(nodes: Factory) -> None:
    """stop() on a paused node resumes it, stops it and frees the port."""
    (node,) = nodes(1)
    node.pause()
    node.stop()
    assert not port_is_open(node.host, node.port)


def test_async_client_talks_to_the_node(nodes: Factory) -> None:
    """async_client() returns a working redis.asyncio client."""
    (node,) = nodes(1)

    async def roundtrip() -> Any:
        async with node.async_client() as client:
            await client.set("k", "v")
            return await client.get("k")

    assert asyncio.run(roundtrip()) == b"v"


def test_provider_close_stops_every_node(provider: NodeProvider) -> None:
    """close() stops all nodes a provider started, and the provider refuses new starts."""
    other = get_provider(provider.kind)
    started = other.start(2)
    other.close()
    for node in started:
        assert not port_is_open(node.host, node.port)
    with pytest.raises(NodeError, match="closed"):
        other.start(1)


def test_redis_nodes_cleans_up_on_exception(provider: NodeProvider) -> None:
    """redis_nodes() stops its nodes when the block raises."""
    ports: list[int] = []

    def use_then_fail() -> None:
        with redis_nodes(2, kind=provider.kind) as got:
            ports.extend(node.port for node in got)
            assert all(port_is_open("127.0.0.1", port) for port in ports)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        use_then_fail()
    assert len(ports) == 2
    assert not any(port_is_open("127.0.0.1", port) for port in ports)


def test_local_provider_reaps_nodes_of_dead_runs(tmp_path: Path) -> None:
    """A node left by a provider whose process died is killed by reap_orphans()."""
    state = tmp_path / "fleetcache-redis-orphan"
    state.mkdir()
    (state / "owner").write_text(f"{_dead_pid()} {os.readlink('/proc/self/ns/pid')}")
    port = free_port()
    proc = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        (state / f"redis-{port}.pid").write_text(str(proc.pid))
        wait_port_open("127.0.0.1", port, timeout=10)
        assert reap_processes(str(tmp_path)) == 1
        assert proc.wait(timeout=10) != 0
        assert not state.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_container_provider_reaps_containers_of_dead_runs() -> None:
    """A container named after a dead owner is removed by the container reaper."""
    if not docker_available():
        pytest.skip("no Docker engine answers a ping")
    client = docker_client()
    try:
        name = f"fleetcache-redis-{_pid_namespace_id()}-{_dead_pid()}-1-orphan"
        container = client.containers.create(ensure_image(client), ["--port", "0"], name=name)
        assert reap_containers(client) >= 1
        assert name not in [c.name for c in client.containers.list(all=True)]
        del container
    finally:
        client.close()


# -- FaultProxy -------------------------------------------------------------------------


@pytest.fixture
def proxy(redis_node: RedisNode) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the session's shared node."""
    with FaultProxy(redis_node.host, redis_node.port) as prox:
        yield prox


def _raw(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    return sock


def test_proxy_forwards_commands_and_large_values(proxy: FaultProxy) -> None:
    """Through a healthy proxy, commands and a 4 MB value round-trip unchanged."""
    assert proxy.url == f"redis://127.0.0.1:{proxy.port}/0"
    value = os.urandom(4 * 1024 * 1024)
    # proxy.url is a plain redis:// URL any client accepts.
    with redis.Redis.from_url(proxy.url, socket_timeout=5, retry=None) as client:
        client.set("big", value)
        assert client.get("big") == value
        assert proxy.connections == 1


def test_proxy_cut_closes_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    """cut() closes open connections and refuses new ones; heal() serves on the same port."""
    sock = _raw(proxy)
    proxy.cut()
    assert sock.recv(64) == b""
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=1).close()
    proxy.heal()
    _raw(proxy).close()


@pytest.mark.slow
def test_proxy_blackhole_keeps_connections_but_answers_nothing(proxy: FaultProxy) -> None:
    """blackhole() accepts and keeps connections but no reply ever comes back."""
    old = _raw(proxy, timeout=0.3)
    proxy.blackhole()
    new = socket.create_connection((proxy.host, proxy.port), timeout=0.3)
    for sock in (old, new):
        sock.sendall(b"PING\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(64)
    assert proxy.connections == 2
    client = make_client(proxy.host, proxy.port, socket_timeout=0.3)
    with client, pytest.raises(redis.TimeoutError):
        client.ping()
    proxy.heal()
    _raw(proxy).close()
    old.close()
    new.close()


@pytest.mark.slow
def test_proxy_delay_adds_latency_each_way(proxy: FaultProxy) -> None:
    """delay(d) makes a round trip take at least 2*d; heal() removes it."""
    sock = _raw(proxy)
    proxy.delay(0.15)
    started = time.monotonic()
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    assert 0.3 <= time.monotonic() - started < 1.5
    proxy.heal()
    started = time.monotonic()
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    assert time.monotonic() - started < 0.15
    sock.close()


def test_proxy_reset_aborts_connections_with_rst(proxy: FaultProxy, r: redis.Redis) -> None:
    """reset() aborts connections with RST (mid-command too), and new ones are served."""
    sock = _raw(proxy)
    client = make_client(proxy.host, proxy.port, socket_timeout=5)
    errors: list[BaseException] = []

    def block() -> None:
        try:
            client.blpop(["never"], timeout=5)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=block)
    worker.start()
    deadline = time.monotonic() + 5
    while not any(c.get("cmd") == "blpop" for c in r.client_list()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        sock.recv(64)
    worker.join(timeout=3)
    assert not worker.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], redis.ConnectionError)
    client.close()
    sock.close()
    _raw(proxy).close()


def test_proxy_closes_clients_when_the_node_dies(fresh_node: RedisNode) -> None:
    """When the node behind the proxy is killed, the proxy closes its clients' connections."""
    with FaultProxy(fresh_node.host, fresh_node.port) as prox:
        sock = _raw(prox)
        fresh_node.kill()
        assert sock.recv(64) == b""
        sock.close()


def test_proxy_stop_closes_its_port(redis_node: RedisNode) -> None:
    """After stop() the proxy's port refuses connections."""
    prox = FaultProxy(redis_node.host, redis_node.port).start()
    port = prox.port
    _raw(prox).close()
    prox.stop()
    prox.stop()
    assert not port_is_open("127.0.0.1", port)
