"""Fixtures of the SDK tests: a real OpenAI/Anthropic-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetcache.testing.llm_server import FakeLLMServer


@pytest.fixture(scope="module")
def llm_server_module() -> Iterator[FakeLLMServer]:
    """One fake LLM server per test module, always stopped."""
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def llm(llm_server_module: FakeLLMServer) -> FakeLLMServer:
    """The module's fake LLM server with its counters zeroed and no delays."""
    llm_server_module.reset()
    llm_server_module.latency = 0.0
    llm_server_module.chunk_delay = 0.0
    return llm_server_module
