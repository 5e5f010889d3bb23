"""Shared fixtures: real Redis nodes from `fleetcache.testing` (never fakes).

The provider is chosen by `FLEETCACHE_REDIS` (containers | local | auto). Fixtures:

- `redis_provider` (session): the provider; every node it started is stopped at the end.
- `redis_node` (session): one shared node. Tests must not kill or pause it: use
  `fresh_node` or `make_nodes` for that.
- `r` (function): a client to the shared node, its data flushed before the test.
- `fresh_node` (function): a dedicated node the test may kill, pause or restart.
- `make_nodes` (function): `make_nodes(n, extra_args=())` -> n dedicated nodes.
- `llm` (function): a real OpenAI/Anthropic-compatible HTTP server on 127.0.0.1
  (`fleetcache.testing.llm_server`), one per module, counters zeroed and no delays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
import redis

from fleetcache.testing import NodeProvider, RedisNode, get_provider
from fleetcache.testing.llm_server import FakeLLMServer


@pytest.fixture(scope="session")
def redis_provider() -> Iterator[NodeProvider]:
    """The session's Redis node provider."""
    provider = get_provider()
    try:
        yield provider
    finally:
        provider.close()


@pytest.fixture(scope="session")
def redis_node(redis_provider: NodeProvider) -> Iterator[RedisNode]:
    """One Redis node shared by the whole session."""
    (node,) = redis_provider.start(1)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def r(redis_node: RedisNode) -> Iterator[redis.Redis]:
    """A client (2 s socket timeouts, no retries) to the shared node, flushed first."""
    if redis_node.paused:
        redis_node.resume()
    if not redis_node.is_running:  # a test broke the rule: bring it back, empty
        redis_node.restart()
    client = redis_node.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fresh_node(redis_provider: NodeProvider) -> Iterator[RedisNode]:
    """A dedicated node for this test alone, always stopped afterwards."""
    (node,) = redis_provider.start(1)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def make_nodes(
    redis_provider: NodeProvider,
) -> Iterator[Callable[..., list[RedisNode]]]:
    """A factory of dedicated nodes; every node it made is stopped at teardown."""
    made: list[RedisNode] = []

    def factory(n: int = 1, extra_args: Sequence[str] = ()) -> list[RedisNode]:
        nodes = redis_provider.start(n, extra_args)
        made.extend(nodes)
        return nodes

    try:
        yield factory
    finally:
        errors = []
        for node in made:
            try:
                node.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="module")
def llm_server_module() -> Iterator[FakeLLMServer]:
    """One fake LLM server (OpenAI/Anthropic-compatible HTTP on 127.0.0.1) per test module."""
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def llm(llm_server_module: FakeLLMServer) -> FakeLLMServer:
    """The module's fake LLM server with its counters zeroed and no delays."""
    llm_server_module.reset()
    llm_server_module.latency = 0.0
    llm_server_module.chunk_delay = 0.0
    return llm_server_module
