"""FastAPI recipe: one ``AsyncCache`` and one cached ``AsyncOpenAI`` client per worker.

Run (see examples/README.md)::

    FLEETCACHE_REDIS_URL=redis://127.0.0.1:6379/0 OPENAI_BASE_URL=http://127.0.0.1:8001/v1 \
        uvicorn examples.fastapi_app:app --workers 4

Every uvicorn worker is a process of its own with its own event loop, so the cache and the
client are made in the app's **lifespan** (inside that worker's loop), kept on
``app.state``, and closed when the worker shuts down.  200 identical ``POST /ask`` arriving
together, spread over the 4 workers, make one upstream call: the requests of one worker
join one in-process flight, the workers' flights meet at one Redis lease, and exactly one
response says ``"from_cache": false``.

Environment: ``FLEETCACHE_REDIS_URL`` (required), ``FLEETCACHE_NAMESPACE`` (default
"llm"), ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``OPENAI_MODEL`` (default "gpt-4.1-mini").
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from openai import AsyncOpenAI
from pydantic import BaseModel
from redis import asyncio as aioredis

from fleetcache import AsyncCache
from fleetcache.llm import cached, from_cache

# The simulated LLM ignores the key; against the real API set OPENAI_API_KEY.
_PLACEHOLDER_KEY = "unset-openai-api-key"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Per worker: open the cache and the cached client on startup, close both on shutdown."""
    redis_client = aioredis.Redis.from_url(os.environ["FLEETCACHE_REDIS_URL"])
    acache = AsyncCache(redis_client, namespace=os.environ.get("FLEETCACHE_NAMESPACE", "llm"))
    openai_client = AsyncOpenAI(
        base_url=os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY", _PLACEHOLDER_KEY),
    )
    app.state.acache = acache
    app.state.client = cached(openai_client, acache)
    try:
        yield
    finally:
        await acache.close()  # waits (bounded) for this worker's leaders, then disconnects
        await openai_client.close()  # the real client (also `app.state.client.__wrapped__`)
        # Test instrumentation, not part of the recipe: tests/recipes counts the workers
        # whose lifespan got here by INCRementing this key when it is set.
        closed_key = os.environ.get("FLEETCACHE_RECIPE_CLOSED_KEY")
        if closed_key:
            await redis_client.incr(closed_key)
        await redis_client.aclose()  # the client we passed stays ours to close


app = FastAPI(title="fleetcache FastAPI recipe", lifespan=lifespan)


class Question(BaseModel):
    """The body of ``POST /ask``."""

    question: str


@app.post("/ask")
async def ask(body: Question, request: Request) -> dict[str, Any]:
    """Answer one question through the cached client."""
    client: Any = request.app.state.client
    resp = await client.chat.completions.create(
        model=os.environ.get("OPENAI_MODEL", "gpt-4.1-mini"),
        messages=[{"role": "user", "content": body.question}],
        temperature=0,
    )
    return {
        "answer": resp.choices[0].message.content,
        "from_cache": from_cache(resp),
        "pid": os.getpid(),  # which worker answered (the tests check the spread)
    }


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    """Liveness."""
    return {"ok": True}
