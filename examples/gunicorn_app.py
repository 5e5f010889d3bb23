"""gunicorn recipe: a plain WSGI app with a synchronous ``Cache``, made once before the fork.

Run (see examples/README.md)::

    FLEETCACHE_REDIS_URL=redis://127.0.0.1:6379/0 OPENAI_BASE_URL=http://127.0.0.1:8001/v1 \
        gunicorn --workers 4 --threads 8 --preload -b 127.0.0.1:8000 examples.gunicorn_app:app

The cache and the cached ``OpenAI`` client are created at **import time**.  With
``--preload`` gunicorn imports this module once, in the master, and forks the 4 workers
from it, so every worker starts with these objects already built:

- fleetcache's ``Cache`` is fork-safe: in a forked child it drops what it inherited (locks,
  in-process flights, the subscription thread, connections) and opens its own connections
  at its first use there;
- the ``OpenAI`` client is fork-safe only while unused: its HTTP connection pool must be
  empty when the master forks.  So nothing here may make a request (or use the cache) at
  import time; the first request of each worker opens that worker's own connections.

``--threads 8`` (the ``gthread`` worker): a plain sync worker serves one request at a time,
so 4 workers would take only 4 requests at once and the rest would queue behind a slow
upstream call; with threads, each worker serves up to 8 at once and identical requests in
one worker join one in-process flight.

Environment: ``FLEETCACHE_REDIS_URL`` (required), ``FLEETCACHE_NAMESPACE`` (default
"llm"), ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``OPENAI_MODEL`` (default "gpt-4.1-mini").
"""

from __future__ import annotations

import atexit
import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

import redis
from openai import OpenAI

from fleetcache import Cache
from fleetcache.llm import cached, from_cache

# The simulated LLM ignores the key; against the real API set OPENAI_API_KEY.
_PLACEHOLDER_KEY = "unset-openai-api-key"

# Built at import: in the gunicorn master with --preload, then inherited by every worker.
cache = Cache(
    redis.Redis.from_url(os.environ["FLEETCACHE_REDIS_URL"]),
    namespace=os.environ.get("FLEETCACHE_NAMESPACE", "llm"),
)
openai_client = OpenAI(
    base_url=os.environ.get("OPENAI_BASE_URL"),
    api_key=os.environ.get("OPENAI_API_KEY", _PLACEHOLDER_KEY),
)
client: Any = cached(openai_client, cache)


@atexit.register
def _close() -> None:
    """At interpreter exit (a worker after gunicorn's graceful stop, or the master)."""
    cache.close()
    openai_client.close()


Reply = tuple[int, dict[str, Any]]


def ask(body: dict[str, Any]) -> Reply:
    """``POST /ask`` with ``{"question": str}``."""
    question = body.get("question")
    if not isinstance(question, str):
        return 422, {"error": 'the body must be {"question": <string>}'}
    resp = client.chat.completions.create(
        model=os.environ.get("OPENAI_MODEL", "gpt-4.1-mini"),
        messages=[{"role": "user", "content": question}],
        temperature=0,
    )
    return 200, {
        "answer": resp.choices[0].message.content,
        "from_cache": from_cache(resp),
        "pid": os.getpid(),  # which worker answered (the tests check the spread)
    }


def healthz(body: dict[str, Any]) -> Reply:
    """``GET /healthz``."""
    return 200, {"ok": True}


ROUTES: dict[str, tuple[str, Callable[[dict[str, Any]], Reply]]] = {
    "/ask": ("POST", ask),
    "/healthz": ("GET", healthz),
}

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            422: "Unprocessable Content"}


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI entry point: route, parse the JSON body, reply with JSON."""
    status, payload, headers = _dispatch(environ)
    data = json.dumps(payload, separators=(",", ":")).encode()
    headers += [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(f"{status} {_REASONS[status]}", headers)
    return [data]


def _dispatch(environ: WSGIEnvironment) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    route = ROUTES.get(environ.get("PATH_INFO", ""))
    if route is None:
        return 404, {"error": "not found"}, []
    method, handler = route
    if environ.get("REQUEST_METHOD") != method:
        return 405, {"error": "method not allowed"}, [("Allow", method)]
    body: Any = {}
    if method == "POST":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"null")
        except ValueError:
            return 400, {"error": "the body is not JSON"}, []
        if not isinstance(body, dict):
            return 422, {"error": "the body must be a JSON object"}, []
    status, payload = handler(body)
    return status, payload, []
