"""``bench llm``: a hit through ``fleetcache.llm.cached`` vs ``cache.get`` vs a raw GET.

One chat completion (about ``--value-size`` bytes of JSON) is stored under the request the
wrapper builds for a fixed ``chat.completions.create(...)`` call.  Each round times N of:

* ``cached(OpenAI()).chat.completions.create(...)``: a hit, rebuilt as a ``ChatCompletion``;
* ``cached(Anthropic()).messages.create(...)``: the same for an Anthropic ``Message``;
* ``cache.get(request)`` of the same entry (the value as JSON data, no SDK object);
* a raw ``GET`` + ``orjson.loads`` of the same JSON on a plain client with the same
  connection settings;

the order rotating from round to round.  Reported: medians over rounds of the per-op time,
and each series' ``time_vs_raw_get`` (its median time / the raw GET's) and the wrapper's
``time_vs_cache_get``.  The SDK clients point at a real fake LLM server
(``fleetcache.testing.llm_server``) that must see no call: exit status 1 otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fleetcache.cli.common import (
    drop_keys,
    format_table,
    fresh_namespace,
    log,
    print_json,
    redis_target,
    us,
)
from fleetcache.cli.fake_llm import sized_completion

HELP = "a hit through fleetcache.llm.cached(OpenAI()) vs cache.get vs a raw GET + decode"
TARGET = 2.0
_TIMEOUT = 1.0
_WARMUP = 300
MESSAGES = [{"role": "user", "content": "bench llm: say something long"}]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench llm``."""
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: start a local one)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds (15)")
    parser.add_argument("--ops", type=int, default=2000, help="operations per series (2000)")
    parser.add_argument("--value-size", type=int, default=2000,
                        help="approximate JSON size of the cached completion in bytes (2000)")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def _anthropic_message(size: int) -> dict[str, Any]:
    text = sized_completion(size)["choices"][0]["message"]["content"]
    return {"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 300}}


def run(args: argparse.Namespace) -> int:
    """Run the bench; exit status 1 when a hit reached the server or returned a wrong value."""
    if min(args.rounds, args.ops) < 1 or args.value_size < 0:
        log("--rounds and --ops must be >= 1, --value-size >= 0")
        return 2
    try:
        import anthropic  # noqa: PLC0415
        import openai  # noqa: PLC0415
    except ImportError:
        log("bench llm needs both SDKs: pip install 'fleetcache[openai,anthropic]'")
        return 2
    from fleetcache import Cache  # noqa: PLC0415
    from fleetcache.llm import cached, from_cache  # noqa: PLC0415
    from fleetcache.llm.apis import ANTHROPIC_MESSAGES, OPENAI_CHAT  # noqa: PLC0415
    from fleetcache.llm.request import build  # noqa: PLC0415
    from fleetcache.testing.llm_server import FakeLLMServer  # noqa: PLC0415

    completion = sized_completion(args.value_size)
    message = _anthropic_message(args.value_size)
    chat_kwargs: dict[str, Any] = {"model": "gpt-4.1-mini", "messages": MESSAGES, "temperature": 0}
    msg_kwargs: dict[str, Any] = {"model": "claude-bench", "max_tokens": 512, "messages": MESSAGES}
    settings: dict[str, Any] = {"socket_timeout": _TIMEOUT, "socket_connect_timeout": _TIMEOUT,
                                "retry": Retry(NoBackoff(), 1)}
    with redis_target(args.redis, quiet=args.json) as url, FakeLLMServer() as server:
        raw_client: redis.Redis = redis.Redis.from_url(url, **settings)
        cache = Cache(redis.Redis.from_url(url, **settings), namespace=fresh_namespace("bench-llm"))
        raw_key = f"fcbench:{cache.namespace}:raw"
        oai = cached(openai.OpenAI(api_key="bench", base_url=server.openai_base_url,
                                   max_retries=0), cache)
        ant = cached(anthropic.Anthropic(api_key="bench", base_url=server.anthropic_base_url,
                                         max_retries=0), cache)
        chat_request = build(OPENAI_CHAT.name, str(oai.base_url), chat_kwargs)[0]
        msg_request = build(ANTHROPIC_MESSAGES.name, str(ant.base_url), msg_kwargs)[0]
        try:
            cache.set(chat_request, completion)
            cache.set(msg_request, message)
            raw_client.set(raw_key, orjson.dumps(completion), ex=3600)
            series: dict[str, Callable[[], Any]] = {
                "cached(OpenAI()) create": lambda: oai.chat.completions.create(**chat_kwargs),
                "cached(Anthropic()) create": lambda: ant.messages.create(**msg_kwargs),
                "cache.get": lambda: cache.get(chat_request),
                "raw GET + orjson.loads": lambda: orjson.loads(raw_client.get(raw_key) or b""),
            }
            checks: dict[str, Callable[[Any], bool]] = {
                names: check for names, check in (
                    ("cached(OpenAI()) create",
                     lambda v: from_cache(v) is True and v.to_dict(mode="json") == completion),
                    ("cached(Anthropic()) create",
                     lambda v: from_cache(v) is True and v.to_dict(mode="json") == message),
                    ("cache.get", lambda v: v == completion),
                    ("raw GET + orjson.loads", lambda v: v == completion),
                )
            }
            per_op, wrong = _rounds(series, checks, args)
        finally:
            cache.close()
            admin = redis.Redis.from_url(url, socket_timeout=5.0)
            drop_keys(admin, f"fc:{cache.namespace}:*", f"fcbench:{cache.namespace}:*")
            for c in (raw_client, admin):
                c.close()
        server_calls = server.calls
    names = list(series)
    medians = {n: statistics.median(per_op[n]) for n in names}
    raw = medians["raw GET + orjson.loads"]
    report: dict[str, Any] = {
        "config": {"rounds": args.rounds, "ops": args.ops, "value_size": args.value_size,
                   "value_json_bytes": len(orjson.dumps(completion))},
        "median_op_s": medians,
        "time_vs_raw_get": {n: medians[n] / raw for n in names},
        "openai_time_vs_cache_get": medians[names[0]] / medians["cache.get"],
        "anthropic_time_vs_cache_get": medians[names[1]] / medians["cache.get"],
        "wrapper_overhead_s": {n: medians[n] - medians["cache.get"] for n in names[:2]},
        "target_time_vs_raw_get": TARGET,
        "wrong_values": wrong,
        "server_calls": server_calls,
    }
    _print(args, report, names)
    return 1 if wrong or server_calls else 0


def _rounds(series: dict[str, Callable[[], Any]], checks: dict[str, Callable[[Any], bool]],
            args: argparse.Namespace) -> tuple[dict[str, list[float]], int]:
    names = list(series)
    for name in names:
        for _ in range(_WARMUP):
            series[name]()
    per_op: dict[str, list[float]] = {n: [] for n in names}
    wrong = 0
    for i in range(args.rounds):
        for name in names[i % len(names):] + names[: i % len(names)]:
            fn, last = series[name], None
            start = time.perf_counter()
            for _ in range(args.ops):
                last = fn()
            per_op[name].append((time.perf_counter() - start) / args.ops)
            wrong += not checks[name](last)
    return per_op, wrong


def _print(args: argparse.Namespace, report: dict[str, Any], names: list[str]) -> None:
    if args.json:
        print_json(report)
        return
    cfg = report["config"]
    print(f"\nbench llm: {cfg['rounds']} rounds x {cfg['ops']} hits, a "
          f"{cfg['value_json_bytes']}-byte chat completion, order rotating each round")
    rows = [[n, us(report["median_op_s"][n]), f"{report['time_vs_raw_get'][n]:.2f}x"]
            for n in names]
    print(format_table(["", "median per op", "time vs raw GET"], rows))
    ratio = report["time_vs_raw_get"][names[0]]
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"\ncached(OpenAI()) hit / raw GET + decode: {ratio:.2f}x ({verdict} the <= "
          f"{TARGET}x target); wrapper overhead over cache.get: "
          f"{us(report['wrapper_overhead_s'][names[0]])} (OpenAI), "
          f"{us(report['wrapper_overhead_s'][names[1]])} (Anthropic)")
    print(f"server calls during the bench: {report['server_calls']} (must be 0)")
