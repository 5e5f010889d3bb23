"""A worker process for the freshness tests: threads calling get_or_set on one request.

``--mode burst``: every thread says it is ready (INCR ``--ready``), waits for a token on
``--go`` (BLPOP), makes one call, and the process prints one JSON line with each call's
value and latency.  ``--mode loop``: every thread calls in a loop for ``--duration``
seconds; the process reports the calls and misses after ``--warmup`` seconds.

``compute`` INCRs ``--counter`` (the upstream calls, counted in Redis), writes this
process's PID to ``--pid-key``, sleeps ``--upstream`` seconds and returns ``--value`` — or
a chat completion that calls a tool, with ``--tool-call``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

import redis

from fleetcache import Cache, Policy, cacheable

REQ = {"model": "m", "messages": [{"role": "user", "content": "fresh?"}], "temperature": 0}


def tool_call_completion(text: str) -> dict[str, Any]:
    """An OpenAI chat completion (model_dump form) whose answer calls a tool."""
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "lookup", "arguments": json.dumps(text)}}]}}],
    }


def main() -> None:
    """Run the worker."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--mode", choices=["burst", "loop"], required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--counter", required=True)
    ap.add_argument("--pid-key", default="")
    ap.add_argument("--ready", default="")
    ap.add_argument("--go", default="")
    ap.add_argument("--upstream", type=float, default=0.2)
    ap.add_argument("--value", default="new")
    ap.add_argument("--tool-call", action="store_true")
    ap.add_argument("--ttl", type=float, default=60.0)
    ap.add_argument("--stale-ttl", type=float, default=0.0)
    ap.add_argument("--early-refresh", type=float, default=0.0)
    ap.add_argument("--lock-ttl", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    args = ap.parse_args()

    control = redis.Redis.from_url(args.url, socket_timeout=120)
    policy = Policy(
        ttl=args.ttl, stale_ttl=args.stale_ttl, early_refresh=args.early_refresh,
        lock_ttl=args.lock_ttl, wait_timeout=30,
        cache_if=cacheable.no_tool_calls if args.tool_call else None,
    )

    def compute() -> Any:
        control.incr(args.counter)
        if args.pid_key:
            control.set(args.pid_key, os.getpid(), px=60_000)
        time.sleep(args.upstream)
        return tool_call_completion(args.value) if args.tool_call else args.value

    lock = threading.Lock()
    calls: list[dict[str, Any]] = []
    with Cache(redis.Redis.from_url(args.url), namespace=args.namespace, policy=policy) as cache:
        cache.get({"warm": "up"})  # subscribe before the burst

        def burst() -> None:
            control.incr(args.ready)
            control.blpop([args.go], timeout=60)
            start = time.monotonic()
            value = cache.get_or_set(REQ, compute)
            with lock:
                calls.append({"value": value, "seconds": time.monotonic() - start})

        def loop(after: float, stop: float) -> None:
            while (now := time.monotonic()) < stop:
                cache.get_or_set(REQ, compute)
                seconds = time.monotonic() - now
                if now >= after:
                    with lock:
                        calls.append({"seconds": seconds})

        if args.mode == "burst":
            targets = [threading.Thread(target=burst) for _ in range(args.threads)]
        else:
            begin = time.monotonic()
            targets = [threading.Thread(target=loop, args=(begin + args.warmup,
                                                           begin + args.duration))
                       for _ in range(args.threads)]
        for t in targets:
            t.start()
        if args.mode == "loop":
            time.sleep(args.warmup)
            misses_at_warmup = cache.stats.misses
        for t in targets:
            t.join()
        report: dict[str, Any] = {"calls": calls, "stats": cache.stats.snapshot()}
        if args.mode == "loop":
            report["misses_after_warmup"] = cache.stats.misses - misses_at_warmup
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
