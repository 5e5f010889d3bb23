"""The process side of ``demo``: worker threads asking an LLM through a cache.

Each worker process builds a real ``openai.OpenAI`` client for the simulated LLM server
the parent runs (:class:`fleetcache.testing.llm_server.FakeLLMServer`), and its threads send
a skewed choice of prompts to ``chat.completions.create``: through fleetcache
(``fleetcache.llm.cached(client, cache)``) or through the naive wrapper (GET; on a miss
call the model, then SET).  The server counts the upstream calls; each worker reports what
it asked, which calls it made itself, and whether every answer is the server's.

The OpenAI SDK is imported inside :func:`worker_main` only: the ``demo`` command (and the
parser of every command) imports this module, and the SDK is an optional dependency.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from typing import Any

from fleetcache import Cache, Policy
from fleetcache.cli.common import connect
from fleetcache.cli.fake_llm import make_request
from fleetcache.core.keys import request_hash
from fleetcache.llm import cached, from_cache
from fleetcache.testing.llm_wire import answer_text

KEY_TTL_S = 3600
#: Seconds an SDK call may take before it fails (the server answers after ``--latency``).
SDK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Workload:
    """Everything a worker process needs (picklable)."""

    url: str
    namespace: str
    mode: str
    threads: int
    prompts: int
    skew: float
    seed: int
    base_url: str  # the simulated LLM server's OpenAI base URL

    def naive_key(self, request: dict[str, Any]) -> str:
        """The naive wrapper's Redis key of ``request``."""
        return f"fcdemo:{self.namespace}:naive:{request_hash(request)}"


@dataclass(frozen=True)
class Shared:
    """The cross-process objects of one run (handed to the workers when they spawn)."""

    barrier: Barrier
    done: Synchronized[int]
    results: multiprocessing.Queue[dict[str, Any]]


def expected_answer(request: dict[str, Any]) -> str:
    """The text the simulated LLM server answers to the chat completion ``request``."""
    return answer_text(request["model"], request["messages"])


def worker_main(loads: list[Workload], worker: int, counts: list[int], shared: Shared) -> None:
    """Worker process ``worker``: runs each of ``loads`` in turn (the modes of one demo), in
    which thread ``t`` sends ``counts[t]`` requests.

    Each run starts at ``shared.barrier`` with the parent; an aborted barrier (the parent
    or another worker gave up) ends the process quietly, and a failure aborts it, so that
    nobody waits for this process any more.  One process serves every mode, so the SDK is
    imported once.
    """
    for load in loads:
        try:
            run_load(load, worker, counts, shared)
        except threading.BrokenBarrierError:
            return
        except BaseException:
            shared.barrier.abort()
            raise


def run_load(load: Workload, worker: int, counts: list[int], shared: Shared) -> None:
    """One mode: set up, meet the parent at the barrier, send the requests, put the result
    on ``shared.results``: latencies, errors, wrong answers, the cache's stats, and per
    prompt number how often it was ``asked`` and how many upstream ``calls`` this process
    made for it itself.
    """
    import openai  # noqa: PLC0415 - optional dependency (see the module docstring)
    from openai.types.chat import ChatCompletion  # noqa: PLC0415

    barrier, done, results = shared.barrier, shared.done, shared.results
    r = connect(load.url)
    # trust_env=False: the server is on loopback, so no HTTP(S)_PROXY from the environment.
    client = openai.OpenAI(
        api_key="demo",
        base_url=load.base_url,
        max_retries=0,
        timeout=SDK_TIMEOUT_S,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )
    cache = (
        Cache(r, namespace=load.namespace, policy=Policy(ttl=KEY_TTL_S))
        if load.mode == "fleetcache"
        else None
    )
    llm = cached(client, cache) if cache is not None else client
    requests = [make_request(i) for i in range(load.prompts)]
    expected = [expected_answer(req) for req in requests]
    weights = [1.0 / (k + 1) ** load.skew for k in range(load.prompts)]
    latencies: list[float] = []
    errors: list[str] = []
    wrong = [0]
    asked: dict[int, int] = {}
    calls: dict[int, int] = {}  # upstream calls this process made itself, per prompt
    guard = threading.Lock()

    def naive(i: int) -> tuple[ChatCompletion, bool]:
        key = load.naive_key(requests[i])
        raw = r.get(key)
        if raw is not None:
            return ChatCompletion.model_validate_json(raw), False
        resp = client.chat.completions.create(**requests[i])
        r.set(key, resp.model_dump_json(), ex=KEY_TTL_S)
        return resp, True

    def one(i: int) -> tuple[Any, bool]:
        """The answer to prompt ``i`` and whether this call reached the upstream itself."""
        if cache is None:
            return naive(i)
        resp = llm.chat.completions.create(**requests[i])
        return resp, from_cache(resp) is False

    def thread_main(t: int, n: int) -> None:
        rng = random.Random(f"{load.seed}:{worker}:{t}")  # same prompts in every mode
        for _ in range(n):
            i = rng.choices(range(load.prompts), weights)[0]
            with guard:
                asked[i] = asked.get(i, 0) + 1
            start = time.perf_counter()
            try:
                resp, own = one(i)
                content = resp.choices[0].message.content
            except Exception as exc:
                with guard:
                    errors.append(f"{type(exc).__name__}: {exc}")
            else:
                elapsed = time.perf_counter() - start
                with guard:
                    latencies.append(elapsed)
                    wrong[0] += content != expected[i]
                    if own:
                        calls[i] = calls.get(i, 0) + 1
            with done.get_lock():
                done.value += 1

    if cache is not None:
        cache.get({"warm-up": load.namespace})  # subscribe before the clock starts
    else:
        r.ping()
    barrier.wait()
    threads = [threading.Thread(target=thread_main, args=(t, n)) for t, n in enumerate(counts)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stats = cache.stats.snapshot() if cache is not None else {}
    if cache is not None:
        cache.close()
    client.close()
    r.close()
    results.put(
        {
            "worker": worker,
            "latencies": latencies,
            "errors": errors,
            "wrong": wrong[0],
            "stats": stats,
            "asked": asked,
            "calls": calls,
        }
    )
