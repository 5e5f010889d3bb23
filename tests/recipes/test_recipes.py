"""The framework recipes of examples/, served for real: uvicorn (FastAPI, 4 workers) and
gunicorn (--preload, 4 forked workers x 8 threads) against real Redis and the fake LLM
server on 127.0.0.1.  A burst of 200 identical ``POST /ask`` makes exactly one upstream
call, spread over every worker, and every worker shuts down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import redis

from fleetcache.testing import free_port
from fleetcache.testing.llm_server import FakeLLMServer
from fleetcache.testing.nodes import RedisNode
from fleetcache.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
BURST = 200
LATENCY = 0.5  # the one upstream call lasts long enough for the whole burst to pile up
MODEL = "gpt-4.1-mini"
QUESTION = "What does fleetcache coalesce?"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
GROUP_EXIT_TIMEOUT = 10.0


def recipe_env(redis_node: RedisNode, llm: FakeLLMServer, **extra: str) -> dict[str, str]:
    """The server's environment: the test's Redis, a fresh namespace, the fake LLM (whose
    calls now take LATENCY seconds)."""
    llm.latency = LATENCY
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FLEETCACHE_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]),
        FLEETCACHE_REDIS_URL=redis_node.url,
        FLEETCACHE_NAMESPACE=f"recipe-{uuid.uuid4().hex[:8]}",
        OPENAI_BASE_URL=llm.openai_base_url,
        OPENAI_API_KEY="test",
        OPENAI_MODEL=MODEL,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        **extra,
    )
    return env


@dataclass
class Server:
    """A recipe server running as a subprocess (its own process group)."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        """What the server has logged so far."""
        return self.log.read_text(errors="replace")


@contextmanager
def serving(cmd: list[str], port: int, env: dict[str, str], log: Path,
            ready_line: str) -> Iterator[Server]:
    """Start ``cmd``; yield once ``ready_line`` was logged WORKERS times and /healthz
    answers; stop it (SIGTERM, then SIGKILL to its process group) whatever happens."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        def ready() -> bool:
            assert proc.poll() is None, f"server exited early:\n{server.output()}"
            if server.output().count(ready_line) < WORKERS:
                return False
            try:
                resp = httpx.get(server.url + "/healthz", timeout=2, trust_env=False)
            except httpx.TransportError:
                return False
            return resp.status_code == 200 and resp.json() == {"ok": True}

        wait_until(ready, START_TIMEOUT, f"{WORKERS} workers up and /healthz answering")
        yield server
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> bool:
    """SIGTERM the server and wait; past STOP_TIMEOUT, SIGKILL its process group
    (start_new_session made it: the server and its workers, nothing else).  Whether the
    server and every worker were gone without a SIGKILL."""
    clean = True
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            clean = False
    if clean:
        # The group empties a moment after the server: multiprocessing's resource tracker
        # (uvicorn spawns its workers) exits once the server's end of its pipe is closed.
        deadline = time.monotonic() + GROUP_EXIT_TIMEOUT
        while live_members(proc.pid):
            if time.monotonic() > deadline:
                clean = False  # something of the server outlived it
                break
            time.sleep(0.01)
        else:
            return True
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    return clean


def live_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that still run (zombies left to init excluded:
    this machine's init reaps them only every few seconds)."""
    live = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(stat[2]) == pgid and stat[0] != "Z":
            live.append(int(entry.name))
    return live


@dataclass
class Burst:
    """What a burst of identical requests got back."""

    replies: list[httpx.Response]
    seconds: float


def burst(url: str, n: int = BURST) -> Burst:
    """``n`` identical ``POST /ask``, all in flight at once (one connection each)."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                                     trust_env=False) as client:
            return await asyncio.gather(
                *(client.post("/ask", json={"question": QUESTION}) for _ in range(n)))

    start = time.monotonic()
    replies = asyncio.run(run())
    return Burst(replies, time.monotonic() - start)


def direct_answer(llm: FakeLLMServer) -> str | None:
    """What the fake server answers the burst's question, asked without any cache."""
    with openai.OpenAI(api_key="test", base_url=llm.openai_base_url, max_retries=0) as client:
        resp = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTION}], temperature=0)
    return resp.choices[0].message.content


def check_burst(result: Burst, server: Server, llm: FakeLLMServer) -> None:
    """One upstream call; 200 OK, one answer (the server's own), one non-cached reply;
    at least WORKERS worker processes served the burst."""
    statuses = [resp.status_code for resp in result.replies]
    assert statuses == [200] * BURST, f"{sorted(set(statuses))}\n{server.output()[-4000:]}"
    bodies: list[dict[str, Any]] = [resp.json() for resp in result.replies]
    assert llm.calls == 1, "the burst made more than one upstream call"
    answers = {body["answer"] for body in bodies}
    assert len(answers) == 1
    assert sorted(body["from_cache"] for body in bodies) == [False] + [True] * (BURST - 1)
    # Every worker is idle in accept() when the burst starts, so each wins a share of the
    # 200 connections (uvicorn: 45 to 53 each).  Only the leader's worker can fall far
    # behind (gunicorn: its accept loop loses the GIL to the thread making the process's
    # first OpenAI call; seen taking 2 to 8 while the others took 32 to 110), and it always
    # served at least the leader's own request: 4 distinct PIDs hold every time.
    pids = {body["pid"] for body in bodies}
    assert server.proc.pid not in pids
    assert len(pids) >= WORKERS, f"only {len(pids)} worker(s) served the burst"
    assert answers == {direct_answer(llm)}
    assert llm.calls == 2  # the direct call, counted apart from the burst's one
    per_pid = sorted(sum(body["pid"] == pid for body in bodies) for pid in pids)
    print(f"\nburst: {BURST} requests in {result.seconds:.2f} s, 1 upstream call, "
          f"{len(pids)} worker PIDs serving {per_pid} requests")


def test_fastapi_recipe_burst_one_upstream_call(redis_node: RedisNode, r: redis.Redis,
                                                llm: FakeLLMServer, tmp_path: Path) -> None:
    """uvicorn x4: 200 identical /ask, 1 upstream call, 4 workers; SIGTERM closes 4 caches."""
    port = free_port()
    closed_key = f"recipe-closed-{uuid.uuid4().hex[:8]}"
    env = recipe_env(redis_node, llm, FLEETCACHE_RECIPE_CLOSED_KEY=closed_key)
    cmd = [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(WORKERS)]
    with serving(cmd, port, env, tmp_path / "uvicorn.log",
                 "Application startup complete.") as server:
        check_burst(burst(server.url), server, llm)
        assert stop(server.proc), "the server or a worker needed a SIGKILL"
        assert server.proc.returncode == 0, server.output()[-4000:]
    assert int(r.get(closed_key) or 0) == WORKERS, server.output()[-4000:]


def test_gunicorn_recipe_burst_one_upstream_call(redis_node: RedisNode, llm: FakeLLMServer,
                                                 tmp_path: Path) -> None:
    """gunicorn --preload x4 forked: 200 identical /ask, 1 upstream call, 4 workers."""
    port = free_port()
    env = recipe_env(redis_node, llm)
    cmd = [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--threads", "8",
           "--preload", "-b", f"127.0.0.1:{port}", "examples.gunicorn_app:app"]
    with serving(cmd, port, env, tmp_path / "gunicorn.log", "Booting worker with pid") as server:
        check_burst(burst(server.url), server, llm)
        assert stop(server.proc), "the server or a worker needed a SIGKILL"
        assert server.proc.returncode == 0, server.output()[-4000:]
