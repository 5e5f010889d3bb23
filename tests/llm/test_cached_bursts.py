"""32 concurrent identical create() calls across 4 worker processes (8 threads or tasks
each) through fleetcache.llm.cached, real SDKs, a real HTTP server on 127.0.0.1 and real
Redis: exactly 1 server call, every caller gets the same answer as an SDK object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from fleetcache.testing.llm_server import FakeLLMServer
from fleetcache.testing.nodes import RedisNode
from fleetcache.testing.waiting import wait_until

WORKER = Path(__file__).with_name("llm_worker.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
PROCS, CALLERS = 4, 8
CASES = {
    "openai-chat-threads": ("openai", "chat", "sync", False, "ChatCompletion"),
    "openai-chat-tasks": ("openai", "chat", "async", False, "ChatCompletion"),
    "openai-chat-stream-threads": ("openai", "chat", "sync", True, "ChatCompletionChunk"),
    "anthropic-stream-tasks": ("anthropic", "messages", "async", True, "RawMessageStartEvent"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_burst_across_processes_makes_one_server_call(case: str, llm: FakeLLMServer,
                                                      r: redis.Redis,
                                                      redis_node: RedisNode) -> None:
    """4 processes x 8 callers, released together: 1 server call, 32 equal SDK answers,
    exactly one of them not from the cache."""
    sdk, api, mode, stream, type_name = CASES[case]
    llm.latency = 0.3
    llm.chunk_delay = 0.02 if stream else 0.0
    tag = uuid.uuid4().hex[:8]
    ready, go = f"ready-{tag}", f"go-{tag}"
    base_url = llm.anthropic_base_url if sdk == "anthropic" else llm.openai_base_url
    args = ["--url", redis_node.url, "--namespace", f"burst-{tag}", "--sdk", sdk, "--api", api,
            "--base-url", base_url, "--mode", mode, "--callers", str(CALLERS),
            "--ready", ready, "--go", go] + (["--stream"] if stream else [])
    procs = [subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
                              text=True, env=ENV) for _ in range(PROCS)]
    try:
        wait_until(lambda: int(r.get(ready) or 0) == PROCS * CALLERS, 60, "every caller ready")
        r.rpush(go, *["go"] * (PROCS * CALLERS))
        results: list[dict[str, Any]] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=90)
            assert proc.returncode == 0, out
            results += json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert llm.calls == 1
    assert len(results) == PROCS * CALLERS
    assert all(res["type"] == type_name for res in results)
    assert all(res["wire"] == results[0]["wire"] for res in results)
    assert sorted(res["from_cache"] for res in results) == [False] + [True] * 31
