"""The README's examples run as pasted: each block marked ``<!-- readme-test: NAME -->`` is
run in a fresh interpreter (the quickstart starts its own Redis and LLM server; the others
get REDIS_URL, OPENAI_BASE_URL and OPENAI_API_KEY pointing at the test's real servers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fleetcache.testing.llm_server import FakeLLMServer
from fleetcache.testing.llm_wire import answer_text
from fleetcache.testing.nodes import RedisNode

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```python\n(.*?)```", re.DOTALL)


def blocks() -> dict[str, str]:
    """The marked Python blocks of the README, by name."""
    return dict(BLOCK.findall(README.read_text("utf-8")))


def run(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout (it must exit 0)."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_readme_marks_its_runnable_examples() -> None:
    """The quickstart, the sync and the async example are marked and found."""
    assert set(blocks()) == {"quickstart", "sync", "async"}


def test_quickstart_runs_as_pasted() -> None:
    """The quickstart starts its own servers and shows one upstream call for three asks."""
    out = run(blocks()["quickstart"])
    assert out.splitlines() == [
        "ChatCompletion from cache: False",
        "ChatCompletion from cache: True",
        "ChatCompletion from cache: True",
        "upstream calls: 1",
    ]


@pytest.mark.parametrize("name", ["sync", "async"])
def test_example_against_your_redis_and_openai(name: str, llm: FakeLLMServer,
                                               redis_node: RedisNode) -> None:
    """The sync/async example, pointed at real servers by the environment, prints the
    answer; run twice, the second run is served from Redis (one server call in all)."""
    env = {"REDIS_URL": redis_node.url, "OPENAI_BASE_URL": llm.openai_base_url,
           "OPENAI_API_KEY": f"test-{uuid.uuid4().hex}"}
    expected = answer_text("gpt-4.1-mini", [{"role": "user", "content": "hi"}])
    redis_node.client().flushall()
    for _ in range(2):
        assert run(blocks()[name], **env).strip() == expected.strip()
    assert llm.calls == 1
