"""A worker process for the SDK tests: concurrent identical ``create()`` calls through
``fleetcache.llm.cached``, released together by a Redis barrier.

Every caller INCRs ``--ready``, waits for a token on ``--go`` (BLPOP), makes its call, and
the process prints one JSON line: each call's wire form (a stream: its chunks) and
``from_cache``.  ``--mode async`` runs the callers as tasks of one event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from typing import Any

import anthropic
import openai
import redis
from redis import asyncio as aioredis

from fleetcache import AsyncCache, Cache, Policy
from fleetcache.llm import cached, from_cache

MESSAGES = [{"role": "user", "content": "burst"}]


def kwargs_for(api: str, stream: bool) -> dict[str, Any]:
    """The create() arguments of the burst."""
    extra: dict[str, Any] = {"stream": True} if stream else {}
    if api == "responses":
        return {"model": "m", "input": "burst", **extra}
    if api == "messages":
        return {"model": "c", "max_tokens": 64, "messages": MESSAGES, **extra}
    return {"model": "m", "messages": MESSAGES, "temperature": 0, **extra}


def client_for(sdk: str, base_url: str, is_async: bool) -> Any:
    """A real SDK client pointed at the fake server."""
    if sdk == "anthropic":
        kind: Any = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    else:
        kind = openai.AsyncOpenAI if is_async else openai.OpenAI
    return kind(api_key="test", base_url=base_url, max_retries=0)


def endpoint(client: Any, api: str) -> Any:
    """The cached create() of ``api``."""
    if api == "responses":
        return client.responses.create
    if api == "messages":
        return client.messages.create
    return client.chat.completions.create


def main() -> None:
    """Run the worker."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--sdk", choices=["openai", "anthropic"], required=True)
    ap.add_argument("--api", choices=["chat", "responses", "messages"], required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--mode", choices=["sync", "async"], default="sync")
    ap.add_argument("--callers", type=int, default=8)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--ready", required=True)
    ap.add_argument("--go", required=True)
    args = ap.parse_args()
    control = redis.Redis.from_url(args.url, socket_timeout=120)
    kwargs = kwargs_for(args.api, args.stream)
    policy = Policy(ttl=600, wait_timeout=30)
    out: list[dict[str, Any]] = []

    def record(result: Any, chunks: list[Any] | None) -> None:
        wire = [c.to_dict(mode="json") for c in chunks] if chunks is not None else (
            result.to_dict(mode="json"))
        out.append({"wire": wire, "from_cache": from_cache(result), "type": type(
            chunks[0] if chunks else result).__name__})

    if args.mode == "sync":
        cache = Cache(redis.Redis.from_url(args.url), namespace=args.namespace, policy=policy)
        create = endpoint(cached(client_for(args.sdk, args.base_url, False), cache), args.api)
        cache.get({"warm": "up"})
        guard = threading.Lock()

        def call() -> None:
            control.incr(args.ready)
            control.blpop([args.go], timeout=60)
            result = create(**kwargs)
            chunks = list(result) if args.stream else None
            with guard:
                record(result, chunks)

        threads = [threading.Thread(target=call) for _ in range(args.callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cache.close()
    else:

        async def run() -> None:
            acache = AsyncCache(aioredis.Redis.from_url(args.url), namespace=args.namespace,
                                policy=policy)
            create = endpoint(cached(client_for(args.sdk, args.base_url, True), acache),
                              args.api)
            await acache.get({"warm": "up"})
            actl = aioredis.Redis.from_url(args.url, socket_timeout=120)

            async def call() -> None:
                await actl.incr(args.ready)
                await actl.blpop([args.go], timeout=60)
                result = await create(**kwargs)
                chunks = [c async for c in result] if args.stream else None
                record(result, chunks)

            await asyncio.gather(*(call() for _ in range(args.callers)))
            await actl.aclose()
            await acache.close()

        asyncio.run(run())
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
