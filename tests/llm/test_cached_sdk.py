"""fleetcache.llm.cached with the real openai and anthropic SDKs against a real HTTP server
on 127.0.0.1 (``fleetcache.testing.llm_server``) and real Redis: SDK types on hits and
misses, the request key, cache_if, errors, pass-through.  Upstream calls are counted by the
server itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
import redis
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from fleetcache import AsyncCache, Cache, Policy, cacheable
from fleetcache.llm import cached, from_cache
from fleetcache.testing.llm_server import FakeLLMServer
from fleetcache.testing.nodes import RedisNode

MSGS = [{"role": "user", "content": "hello"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather",
                                           "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture
def cache(r: redis.Redis) -> Iterator[Cache]:
    """A Cache in a fresh namespace, closed afterwards."""
    with Cache(r, namespace=f"llm-{uuid.uuid4().hex[:8]}", policy=Policy(ttl=600)) as c:
        yield c


def oai(llm: FakeLLMServer, cache: Cache, **kw: Any) -> Any:
    """A cached openai.OpenAI pointed at the fake server."""
    return cached(openai.OpenAI(api_key="t", base_url=llm.openai_base_url, max_retries=0),
                  cache, **kw)


def ant(llm: FakeLLMServer, cache: Cache) -> Any:
    """A cached anthropic.Anthropic pointed at the fake server."""
    return cached(anthropic.Anthropic(api_key="t", base_url=llm.anthropic_base_url,
                                      max_retries=0), cache)


def test_chat_miss_then_hit_are_sdk_objects(llm: FakeLLMServer, cache: Cache) -> None:
    """A miss returns the SDK's own ChatCompletion, a hit an equal rebuilt one; 1 server call."""
    client = oai(llm, cache)
    miss = client.chat.completions.create(model="m", messages=MSGS)
    hit = client.chat.completions.create(model="m", messages=MSGS)
    assert type(miss) is ChatCompletion
    assert type(hit) is ChatCompletion
    assert from_cache(miss) is False
    assert from_cache(hit) is True
    assert hit.to_dict() == miss.to_dict()
    assert hit.choices[0].message.content
    assert hit.model_dump() == miss.model_dump()
    assert "_fleetcache_from_cache" not in hit.to_json()
    assert llm.calls == 1
    assert cache.stats.hits == 1
    assert cache.stats.upstream_calls == 1


def test_responses_miss_then_hit(llm: FakeLLMServer, cache: Cache) -> None:
    """responses.create is cached: the hit is an openai Response with the same output_text."""
    client = oai(llm, cache)
    miss = client.responses.create(model="m", input="hello")
    hit = client.responses.create(model="m", input="hello")
    assert type(hit) is Response
    assert hit.output_text == miss.output_text != ""
    assert (from_cache(miss), from_cache(hit), llm.calls) == (False, True, 1)


def test_anthropic_miss_then_hit(llm: FakeLLMServer, cache: Cache) -> None:
    """anthropic messages.create is cached: the hit is an anthropic Message equal to the miss."""
    client = ant(llm, cache)
    miss = client.messages.create(model="c", max_tokens=32, messages=MSGS)
    hit = client.messages.create(model="c", max_tokens=32, messages=MSGS)
    assert type(hit) is anthropic.types.Message
    assert hit.to_dict() == miss.to_dict()
    assert (from_cache(miss), from_cache(hit), llm.calls) == (False, True, 1)


def test_async_clients_miss_then_hit(llm: FakeLLMServer, redis_node: RedisNode) -> None:
    """AsyncOpenAI and AsyncAnthropic through an AsyncCache: SDK types, one call each."""

    async def main() -> None:
        async with AsyncCache(redis_node.async_client(), namespace=f"a-{uuid.uuid4().hex}") as ac:
            oc = cached(openai.AsyncOpenAI(api_key="t", base_url=llm.openai_base_url,
                                           max_retries=0), ac)
            an = cached(anthropic.AsyncAnthropic(api_key="t", base_url=llm.anthropic_base_url,
                                                 max_retries=0), ac)
            a = await oc.chat.completions.create(model="m", messages=MSGS)
            b = await oc.chat.completions.create(model="m", messages=MSGS)
            c = await an.messages.create(model="c", max_tokens=8, messages=MSGS)
            d = await an.messages.create(model="c", max_tokens=8, messages=MSGS)
            assert type(b) is ChatCompletion
            assert b.to_dict() == a.to_dict()
            assert type(d) is anthropic.types.Message
            assert d.to_dict() == c.to_dict()
            assert [from_cache(x) for x in (a, b, c, d)] == [False, True, False, True]

    asyncio.run(main())
    assert llm.calls == 2


def test_equivalent_arguments_share_an_entry(llm: FakeLLMServer, cache: Cache) -> None:
    """0 vs 0.0, None vs omitted, NOT_GIVEN/omit, timeout, extra_headers, user, metadata and
    a tuple of messages all give the same key: one server call for all of them."""
    create = oai(llm, cache).chat.completions.create
    first = create(model="m", messages=MSGS, temperature=0)
    variants: list[dict[str, Any]] = [
        {"temperature": 0.0},
        {"temperature": 0, "top_p": None, "seed": openai.NOT_GIVEN, "stop": openai.omit},
        {"temperature": 0, "timeout": 3.0, "extra_headers": {"X-Trace": "1"}},
        {"temperature": 0, "user": "u-1", "metadata": {"k": "v"}, "store": True},
        {"temperature": 0, "stream": False},
    ]
    for extra in variants:
        got = create(model="m", messages=MSGS, **extra)
        assert from_cache(got) is True, extra
        assert got.to_dict() == first.to_dict()
    assert from_cache(create(model="m", messages=tuple(MSGS), temperature=0)) is True
    assert from_cache(create(model="m", messages=iter(MSGS), temperature=0)) is True
    assert llm.calls == 1


def test_output_changing_arguments_get_their_own_entry(llm: FakeLLMServer,
                                                        cache: Cache) -> None:
    """temperature 0 vs 0.5, another model, extra_body, and another base_url are misses."""
    client = oai(llm, cache)
    client.chat.completions.create(model="m", messages=MSGS, temperature=0)
    assert from_cache(client.chat.completions.create(model="m", messages=MSGS,
                                                     temperature=0.5)) is False
    assert from_cache(client.chat.completions.create(model="m2", messages=MSGS,
                                                     temperature=0)) is False
    assert from_cache(client.chat.completions.create(
        model="m", messages=MSGS, temperature=0, extra_body={"top_k": 5})) is False
    with FakeLLMServer() as second_deployment:
        other = client.with_options(base_url=second_deployment.openai_base_url)
        assert from_cache(other.chat.completions.create(model="m", messages=MSGS,
                                                        temperature=0)) is False
        assert second_deployment.calls == 1
    assert llm.calls == 4


def test_ignore_adds_names_to_leave_out(llm: FakeLLMServer, cache: Cache) -> None:
    """cached(..., ignore={"seed"}) leaves seed out of the key."""
    create = oai(llm, cache, ignore={"seed"}).chat.completions.create
    create(model="m", messages=MSGS, seed=1)
    assert from_cache(create(model="m", messages=MSGS, seed=2)) is True
    assert llm.calls == 1


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
def test_tool_call_responses_are_not_cached(llm: FakeLLMServer, cache: Cache, api: str) -> None:
    """A response that calls a tool reaches its caller but is not stored (default cache_if)."""
    if api == "messages":
        client = ant(llm, cache)
        tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]

        def call() -> Any:
            return client.messages.create(model="c", max_tokens=8, messages=MSGS, tools=tools)
    elif api == "responses":
        client = oai(llm, cache)

        def call() -> Any:
            return client.responses.create(model="m", input="hi", tools=[
                {"type": "function", "name": "get_weather", "parameters": {}}])
    else:
        client = oai(llm, cache)

        def call() -> Any:
            return client.chat.completions.create(model="m", messages=MSGS, tools=TOOLS)

    first, second = call(), call()
    assert from_cache(first) is False
    assert from_cache(second) is False
    assert llm.calls == 2
    assert cache.stats.not_cached == 2
    assert cacheable.no_tool_calls(None, first.to_dict(mode="json")) is False


def test_cache_if_none_stores_tool_calls(llm: FakeLLMServer, cache: Cache) -> None:
    """cache_if=None drops the wrapper's default rule: a tool-call response is stored."""
    create = oai(llm, cache, cache_if=None).chat.completions.create
    create(model="m", messages=MSGS, tools=TOOLS)
    hit = create(model="m", messages=MSGS, tools=TOOLS)
    assert from_cache(hit) is True
    assert hit.choices[0].message.tool_calls
    assert llm.calls == 1


def test_cache_policy_cache_if_is_kept(llm: FakeLLMServer, r: redis.Redis) -> None:
    """The cache's own cache_if (max_temperature(0)) still applies under the wrapper's."""
    policy = Policy(ttl=60, cache_if=cacheable.max_temperature(0.0))
    with Cache(r, namespace=f"p-{uuid.uuid4().hex}", policy=policy) as cache:
        create = oai(llm, cache).chat.completions.create
        create(model="m", messages=MSGS, temperature=0.7)
        assert from_cache(create(model="m", messages=MSGS, temperature=0.7)) is False
        create(model="m", messages=MSGS, temperature=0)
        assert from_cache(create(model="m", messages=MSGS, temperature=0)) is True
    assert llm.calls == 3


def test_upstream_error_reaches_the_caller_and_nothing_is_stored(llm: FakeLLMServer,
                                                                  cache: Cache) -> None:
    """An HTTP 500 raises the SDK's InternalServerError; the next call asks the server again."""
    create = oai(llm, cache).chat.completions.create
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            create(model="fail-500", messages=MSGS)
    assert llm.calls == 2


def test_bad_arguments_raise_before_any_call(llm: FakeLLMServer, cache: Cache,
                                             r: redis.Redis) -> None:
    """Non-JSON arguments, NaN and positional arguments raise TypeError; nothing is sent or
    written."""
    create = oai(llm, cache).chat.completions.create
    keys_before = r.dbsize()
    with pytest.raises(TypeError, match="messages"):
        create(model="m", messages=[{"role": "user", "content": object()}])
    with pytest.raises(TypeError, match="temperature"):
        create(model="m", messages=MSGS, temperature=float("nan"))
    with pytest.raises(TypeError, match="keyword arguments only"):
        create("m", MSGS)
    with pytest.raises(TypeError, match="one-shot iterator"):
        create(model="m", messages=[{"role": "user", "content": iter(["a"])}])
    assert llm.calls == 0
    assert r.dbsize() == keys_before


def test_wrong_client_or_cache_kind_is_refused(llm: FakeLLMServer, cache: Cache,
                                               redis_node: RedisNode) -> None:
    """cached() refuses a non-SDK object, an async client with a Cache, a sync client with
    an AsyncCache, a cached client, and a bad ignore."""
    sync_client = openai.OpenAI(api_key="t", base_url=llm.openai_base_url)
    with pytest.raises(TypeError, match=r"not builtins\.object"):
        cached(object(), cache)
    with pytest.raises(TypeError, match="AsyncCache"):
        cached(openai.AsyncOpenAI(api_key="t", base_url=llm.openai_base_url), cache)
    with pytest.raises(TypeError, match="pass a Cache"):
        cached(sync_client, AsyncCache(redis_node.async_client(), namespace="x"))
    with pytest.raises(TypeError, match="cached already"):
        cached(cached(sync_client, cache), cache)
    with pytest.raises(TypeError, match="not a string"):
        cached(sync_client, cache, ignore="seed")


def test_everything_else_passes_through(llm: FakeLLMServer, cache: Cache) -> None:
    """Attributes other than the cached create() are the real client's; with_options and
    copy give cached clients again; __wrapped__ is the real client."""
    real = openai.OpenAI(api_key="t", base_url=llm.openai_base_url, max_retries=0)
    client = cached(real, cache)
    assert client.__wrapped__ is real
    assert client.api_key == "t"
    assert client.models is real.models
    assert client.chat.completions.with_raw_response is not None
    assert client.chat.completions.create is client.chat.completions.create  # resolved once
    again = client.with_options(timeout=5)
    again.chat.completions.create(model="m", messages=MSGS)
    assert from_cache(again.chat.completions.create(model="m", messages=MSGS)) is True
    assert from_cache(client.copy().chat.completions.create(model="m", messages=MSGS)) is True
    assert "chat" in dir(client)
    assert llm.calls == 1


def test_redis_down_fails_open_to_the_sdk(llm: FakeLLMServer, fresh_node: RedisNode) -> None:
    """With Redis stopped, create() still answers (straight from the server), as an SDK
    object marked not-from-cache."""
    policy = Policy(ttl=60, redis_timeout=0.5)
    with Cache(fresh_node.client(), namespace="down", policy=policy) as cache:
        create = oai(llm, cache).chat.completions.create
        fresh_node.stop()
        got = create(model="m", messages=MSGS)
        assert type(got) is ChatCompletion
        assert from_cache(got) is False
    assert llm.calls == 1
