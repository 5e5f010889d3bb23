"""``demo``: a small fleet of worker processes asks a simulated LLM overlapping prompts.

The parent process starts a simulated OpenAI-compatible LLM server on 127.0.0.1
(:class:`fleetcache.testing.llm_server.FakeLLMServer`, answering after ``--latency``
seconds) for the run, and every worker process talks to it with the real ``openai`` SDK.
The server counts the calls that reach it: that count, as the upstream sees it, is the
headline number (duplicate upstream calls = server calls - distinct prompts asked).  With
fleetcache (``fleetcache.llm.cached(client, cache)``) each distinct prompt reaches the
server once; ``--no-lock`` runs the classic naive wrapper (GET, on a miss call the model
then SET) so that the duplicate calls show; ``--compare`` runs both back to back.  Every
answer is checked against the text the server deterministically gives for its prompt.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import redis

from fleetcache.cli.common import (
    Progress,
    connect,
    drop_keys,
    format_table,
    fresh_namespace,
    log,
    ms,
    pct,
    percentile,
    print_json,
    reap,
    redis_target,
)
from fleetcache.cli.demo_worker import Shared, Workload, worker_main
from fleetcache.testing.llm_server import FakeLLMServer

HELP = "run a small fleet of worker processes against a simulated LLM and count the calls"
MODES = ("fleetcache", "naive")
NEEDS_OPENAI = "the demo needs the OpenAI SDK: pip install 'fleetcache[openai]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``demo``."""
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: start a local one)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    parser.add_argument("--requests", type=int, default=200, help="requests in total (200)")
    parser.add_argument("--prompts", type=int, default=20, help="distinct prompts (20)")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.3,
        help="seconds the simulated LLM server takes to answer (0.3)",
    )
    parser.add_argument(
        "--skew", type=float, default=1.1, help="Zipf exponent of the prompt popularity (1.1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--no-lock",
        action="store_true",
        help="use the naive wrapper (GET; on a miss call the LLM, SET) instead",
    )
    mode.add_argument("--compare", action="store_true", help="run fleetcache and naive")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.add_argument(
        "--keep-keys",
        action="store_true",
        help="leave the run's cache entries in Redis (they expire by their TTL)",
    )


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal non-negative integers."""
    base, extra = divmod(total, parts)
    return [base + (k < extra) for k in range(parts)]


def run_modes(
    args: argparse.Namespace, url: str, llm: FakeLLMServer, modes: list[str], quiet: bool
) -> list[dict[str, Any]]:
    """Run the workload through each of ``modes`` in turn, against the LLM server ``llm``.

    The same worker processes serve every mode (each builds a new client, cache and
    namespace for it), so the SDK is imported once per process; the barrier starts each
    mode's clock.  A mode that loses a worker ends the demo: its summary is the last one,
    or there is none when a worker fails before the mode starts (its traceback on stderr).
    """
    loads = [
        Workload(
            url,
            fresh_namespace(f"demo-{mode}"),
            mode,
            args.threads,
            args.prompts,
            args.skew,
            args.seed,
            llm.openai_base_url,
        )
        for mode in modes
    ]
    ctx = multiprocessing.get_context("spawn")
    done: Synchronized[int] = ctx.Value("i", 0)
    results: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
    shared = Shared(ctx.Barrier(args.workers + 1), done, results)
    per_caller = split(args.requests, args.workers * args.threads)
    procs = [
        ctx.Process(
            target=worker_main,
            name=f"fleetcache-demo-{w}",
            daemon=True,
            args=(loads, w, per_caller[w * args.threads : (w + 1) * args.threads], shared),
        )
        for w in range(args.workers)
    ]
    progress = Progress(enabled=not quiet, every=2.0)
    progress.update(f"starting {args.workers} worker processes...", force=True)
    for p in procs:
        p.start()
    summaries: list[dict[str, Any]] = []
    try:
        for load in loads:
            try:
                summaries.append(run_mode(args, llm, load, procs, shared, progress))
            except threading.BrokenBarrierError:
                progress.done(f"[{load.mode}] a worker process failed before the start")
                break
            if summaries[-1]["workers_failed"]:
                shared.barrier.abort()  # the others leave instead of waiting for a next mode
                break
    finally:
        reap(procs)
        if not getattr(args, "keep_keys", False):
            r = connect(url)
            for load in loads:
                drop_keys(r, f"fc:{load.namespace}:*", f"fcdemo:{load.namespace}:*")
            r.close()
    return summaries


def run_mode(  # noqa: PLR0917 - one mode of run_modes, with its whole context
    args: argparse.Namespace,
    llm: FakeLLMServer,
    load: Workload,
    procs: Sequence[multiprocessing.process.BaseProcess],
    shared: Shared,
    progress: Progress,
) -> dict[str, Any]:
    """Run ``load`` (one mode) on the started worker processes ``procs``; its summary."""
    mode, done, results = load.mode, shared.done, shared.results
    done.value = 0
    llm.reset()  # before the barrier, so the count is this mode's alone
    shared.barrier.wait(timeout=120)
    t0 = time.perf_counter()
    collected: dict[int, dict[str, Any]] = {}
    while len(collected) < len(procs):
        try:
            res = results.get(timeout=0.1)
            collected[res["worker"]] = res
            continue
        except Exception:  # queue.Empty
            pass
        pending = [p for w, p in enumerate(procs) if w not in collected]
        if all(not p.is_alive() for p in pending) and results.empty():
            break
        progress.update(
            f"[{mode}] {done.value}/{args.requests} requests, upstream calls so far: {llm.calls}"
        )
    wall = time.perf_counter() - t0
    calls = llm.calls  # as the upstream saw them: every worker of this mode has finished
    progress.done(f"[{mode}] {done.value}/{args.requests} requests, upstream calls: {calls}")
    return summarize(load, collected.values(), calls, wall, len(procs) - len(collected))


def summarize(
    load: Workload, collected: Iterable[dict[str, Any]], calls: int, wall: float, failed: int
) -> dict[str, Any]:
    """The summary of one mode from its workers' results and the server's call count."""
    latencies: list[float] = []
    errors: list[str] = []
    wrong = 0
    stats: dict[str, int] = {}
    asked: dict[int, int] = {}
    own_calls: dict[int, int] = {}
    for res in collected:
        latencies += res["latencies"]
        errors += res["errors"]
        wrong += res["wrong"]
        for k, v in res["stats"].items():
            stats[k] = stats.get(k, 0) + v
        for i, n in res["asked"].items():
            asked[i] = asked.get(i, 0) + n
        for i, n in res["calls"].items():
            own_calls[i] = own_calls.get(i, 0) + n
    served = len(latencies)
    summary: dict[str, Any] = {
        "mode": load.mode,
        "namespace": load.namespace,
        "llm_server": load.base_url,
        "requests": served,
        "errors": len(errors),
        "upstream_calls": calls,
        "calls_saved": served - calls,
        "hit_rate": (served - calls) / served if served else 0.0,
        "distinct_prompts_asked": len(asked),
        "duplicate_upstream_calls": calls - len(asked),
        # The clients' own view, per prompt number: the upstream calls they made themselves.
        "calls_per_prompt": {str(i): own_calls.get(i, 0) for i in sorted(asked)},
        "max_calls_one_prompt": max(own_calls.values(), default=0),
        "wrong_values": wrong,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "wall_s": wall,
        "workers_failed": failed,
    }
    if stats:
        summary["cache_stats"] = stats
    if errors:
        summary["first_errors"] = errors[:5]
    return summary


def _seconds(x: float) -> str:
    return f"{x:.2f} s"


#: The summary table: (label, summary key, formatter).
_TABLE: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("requests", "requests", str),
    ("upstream calls (server count)", "upstream_calls", str),
    ("calls saved", "calls_saved", str),
    ("hit rate", "hit_rate", pct),
    ("distinct prompts asked", "distinct_prompts_asked", str),
    ("duplicate upstream calls", "duplicate_upstream_calls", str),
    ("most calls for one prompt", "max_calls_one_prompt", str),
    ("latency p50", "latency_p50_s", ms),
    ("latency p99", "latency_p99_s", ms),
    ("wall time", "wall_s", _seconds),
    ("errors", "errors", str),
    ("wrong values", "wrong_values", str),
)


def _rows(summaries: list[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = [
        [label, *(fmt(s[key]) for s in summaries)] for label, key, fmt in _TABLE
    ]
    if any("cache_stats" in s for s in summaries):
        for name in ("hits", "coalesced", "followed"):
            stat = [s.get("cache_stats", {}).get(name, "-") for s in summaries]
            rows.append([f"fleetcache stats: {name}", *stat])
    return rows


def conclusion(summaries: list[dict[str, Any]]) -> str:
    """The one sentence the table shows, naive first: ``naive: 57 duplicate upstream calls;
    fleetcache: 0`` (one mode only: ``fleetcache: 0 duplicate upstream calls``)."""
    ordered = sorted(summaries, key=lambda s: s["mode"] != "naive")
    parts = [f"{s['mode']}: {s['duplicate_upstream_calls']}" for s in ordered]
    n = ordered[0]["duplicate_upstream_calls"]
    parts[0] += f" duplicate upstream call{'' if n == 1 else 's'}"
    return "; ".join(parts)


def has_openai() -> bool:
    """Whether the OpenAI SDK is importable (found, not imported: the workers import it)."""
    try:
        return importlib.util.find_spec("openai") is not None
    except (ImportError, ValueError):  # ValueError: a module in sys.modules without a spec
        return False


def redis_problem(url: str) -> str | None:
    """Why Redis at ``url`` does not answer a PING, or None when it does."""
    r = connect(url)
    try:
        r.ping()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        r.close()
    return None


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit status 1 on errors, wrong values, a failed worker, an unreachable
    Redis or no OpenAI SDK; 2 on bad arguments."""
    for name in ("workers", "threads", "requests", "prompts"):
        if getattr(args, name) < 1:
            log(f"--{name} must be at least 1")
            return 2
    if args.latency < 0:
        log("--latency must be >= 0")
        return 2
    if not has_openai():
        log(NEEDS_OPENAI)
        return 1
    modes = list(MODES) if args.compare else ["naive" if args.no_lock else "fleetcache"]
    with redis_target(args.redis, quiet=args.json) as url:
        problem = redis_problem(url)
        if problem:
            log(f"cannot reach Redis at {url}: {problem}")
            return 1
        llm = FakeLLMServer(latency=args.latency).start()  # 127.0.0.1, a free port
        try:
            summaries = run_modes(args, url, llm, modes, quiet=args.json)
        finally:
            llm.stop()
    if not summaries:
        return 1
    sentence = conclusion(summaries)
    if args.json:
        out = summaries[0] if len(modes) == 1 else {"runs": summaries}
        print_json({**out, "conclusion": sentence})
    else:
        print()
        print(
            f"{args.workers} processes x {args.threads} threads, {args.requests} requests "
            f"over {args.prompts} prompts, simulated LLM server (OpenAI SDK) latency "
            f"{args.latency:g} s"
        )
        print(format_table(["", *(s["mode"] for s in summaries)], _rows(summaries)))
        for s in summaries:
            for err in s.get("first_errors", []):
                print(f"[{s['mode']}] error: {err}")
        print()
        print(sentence)
    bad = any(s["errors"] or s["wrong_values"] or s["workers_failed"] for s in summaries)
    return 1 if bad or len(summaries) < len(modes) else 0
