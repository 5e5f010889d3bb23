"""Streams through fleetcache.llm.cached (real SDKs, a real HTTP server on 127.0.0.1, real
Redis): live pass-through on a miss, chunk-for-chunk replay on a hit or for a waiting
follower, and abandoned streams that are neither stored nor leave anyone waiting."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
import redis

from fleetcache import AsyncCache, Cache, Policy
from fleetcache.llm import AsyncCachedStream, CachedStream, cached, from_cache
from fleetcache.testing.llm_server import FakeLLMServer
from fleetcache.testing.nodes import RedisNode

MSGS = [{"role": "user", "content": "stream please"}]
POLICY = Policy(ttl=600, wait_timeout=30)


def ns() -> str:
    """A fresh namespace."""
    return f"st-{uuid.uuid4().hex[:8]}"


def make_client(llm: FakeLLMServer, sdk: str, is_async: bool, cache: Any) -> Any:
    """A cached real SDK client pointed at the fake server."""
    if sdk == "anthropic":
        kind: Any = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
        return cached(kind(api_key="t", base_url=llm.anthropic_base_url, max_retries=0), cache)
    kind = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cached(kind(api_key="t", base_url=llm.openai_base_url, max_retries=0), cache)


def stream_call(client: Any, api: str, prompt: str = "stream please") -> Any:
    """Start a streamed create() of ``api`` (returns the stream, or a coroutine of it)."""
    if api == "responses":
        return client.responses.create(model="m", input=prompt, stream=True)
    if api == "messages":
        return client.messages.create(model="c", max_tokens=64, stream=True,
                                      messages=[{"role": "user", "content": prompt}])
    return client.chat.completions.create(model="m", stream=True,
                                          messages=[{"role": "user", "content": prompt}])


CASES = [("openai", "chat"), ("openai", "responses"), ("anthropic", "messages")]


@pytest.fixture
def cache(r: redis.Redis) -> Iterator[Cache]:
    """A Cache in a fresh namespace."""
    with Cache(r, namespace=ns(), policy=POLICY) as c:
        yield c


@pytest.mark.parametrize(("sdk", "api"), CASES)
def test_stream_replays_chunk_for_chunk(llm: FakeLLMServer, cache: Cache, sdk: str,
                                        api: str) -> None:
    """A streamed miss passes the SDK's chunks through; the hit replays equal chunks of the
    same types, in order, without a server call."""
    client = make_client(llm, sdk, False, cache)
    first = stream_call(client, api)
    assert isinstance(first, CachedStream)
    live = list(first)
    again = stream_call(client, api)
    replay = list(again)
    assert from_cache(first) is False
    assert from_cache(again) is True
    assert len(live) > 3
    assert len(replay) == len(live)
    assert [type(c) for c in replay] == [type(c) for c in live]
    assert [c.to_dict() for c in replay] == [c.to_dict() for c in live]
    assert llm.calls == 1


@pytest.mark.parametrize(("sdk", "api"), CASES)
def test_async_stream_replays_chunk_for_chunk(llm: FakeLLMServer, redis_node: RedisNode,
                                              sdk: str, api: str) -> None:
    """The same with the asyncio clients: ``async for`` over live, then replayed chunks."""

    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        async with AsyncCache(redis_node.async_client(), namespace=ns(), policy=POLICY) as ac:
            client = make_client(llm, sdk, True, ac)
            first = await stream_call(client, api)
            assert isinstance(first, AsyncCachedStream)
            live = [c async for c in first]
            async with await stream_call(client, api) as again:
                replay = [c async for c in again]
            return live, replay, [from_cache(first), from_cache(again)]

    live, replay, flags = asyncio.run(main())
    assert flags == [False, True]
    assert len(live) > 3
    assert [(type(c), c.to_dict()) for c in replay] == [(type(c), c.to_dict()) for c in live]
    assert llm.calls == 1


def test_live_chunks_arrive_as_the_server_sends_them(llm: FakeLLMServer, cache: Cache) -> None:
    """On a miss the caller gets the first chunk long before the server sends the last one
    (pass-through, not buffered until the end)."""
    llm.chunk_delay = 0.1
    start = time.monotonic()
    stream = stream_call(make_client(llm, "openai", False, cache), "chat")
    arrivals = [time.monotonic() - start for _ in stream]
    assert len(arrivals) >= 8
    assert arrivals[0] < arrivals[-1] / 2


def test_a_follower_waiting_on_a_stream_gets_the_replay(llm: FakeLLMServer, r: redis.Redis,
                                                        redis_node: RedisNode) -> None:
    """A second worker (another Cache, through Redis) asking while the first streams waits
    and gets the whole stream replayed: one server call."""
    llm.chunk_delay = 0.05
    name = ns()
    with Cache(r, namespace=name, policy=POLICY) as a, \
            Cache(redis_node.client(), namespace=name, policy=POLICY) as b:
        leader = stream_call(make_client(llm, "openai", False, a), "chat")
        live = [next(leader)]  # the leader is streaming now
        follower = stream_call(make_client(llm, "openai", False, b), "chat")
        live += list(leader)
        replay = list(follower)
    assert from_cache(leader) is False
    assert from_cache(follower) is True
    assert [c.to_dict() for c in replay] == [c.to_dict() for c in live]
    assert llm.calls == 1
    assert b.stats.followed == 1


def test_abandoned_stream_is_not_stored_and_followers_take_over(
        llm: FakeLLMServer, r: redis.Redis, redis_node: RedisNode) -> None:
    """The leader's caller closes after 2 chunks: nothing is stored, the server sees the
    disconnect, and both a follower of the same process and one of another worker get a
    whole stream from one new call (not after wait_timeout)."""
    llm.chunk_delay = 0.05
    name = ns()
    with Cache(r, namespace=name, policy=POLICY) as a, \
            Cache(redis_node.client(), namespace=name, policy=POLICY) as b:
        client_a = make_client(llm, "openai", False, a)
        leader = stream_call(client_a, "chat")
        next(leader), next(leader)
        results: dict[str, Any] = {}

        def follow(key: str, client: Any) -> None:
            start = time.monotonic()
            results[key] = ([c.to_dict() for c in stream_call(client, "chat")],
                            time.monotonic() - start)

        threads = [threading.Thread(target=follow, args=("same", client_a)),
                   threading.Thread(target=follow, args=("other", make_client(llm, "openai",
                                                                             False, b)))]
        for t in threads:
            t.start()
        llm.wait_for(lambda s: s.calls == 1)
        leader.close()
        for t in threads:
            t.join(20)
        assert llm.wait_for(lambda s: s.abandoned == 1)
    whole = results["same"][0]
    assert results["other"][0] == whole
    assert len(whole) >= 10
    assert max(results["same"][1], results["other"][1]) < POLICY.wait_timeout / 3
    assert llm.calls == 2
    assert llm.completed == 1
    with Cache(r, namespace=name, policy=POLICY) as c:
        replay = stream_call(make_client(llm, "openai", False, c), "chat")
        assert [x.to_dict() for x in replay] == whole
        assert from_cache(replay) is True
    assert llm.calls == 2


def test_abandoned_stream_is_not_stored_async(llm: FakeLLMServer,
                                              redis_node: RedisNode) -> None:
    """asyncio: ``await stream.close()`` half-way stores nothing; the next call streams
    afresh from the server."""
    llm.chunk_delay = 0.05

    async def main() -> list[Any]:
        async with AsyncCache(redis_node.async_client(), namespace=ns(), policy=POLICY) as ac:
            client = make_client(llm, "anthropic", True, ac)
            first = await stream_call(client, "messages")
            await first.__anext__()
            await first.close()
            second = await stream_call(client, "messages")
            chunks = [c async for c in second]
            assert from_cache(second) is False
            return chunks

    chunks = asyncio.run(main())
    assert chunks[-1].type == "message_stop"
    assert llm.calls == 2
    assert llm.wait_for(lambda s: s.abandoned == 1)


def test_stream_and_plain_calls_are_separate_entries(llm: FakeLLMServer, cache: Cache) -> None:
    """stream=True and a plain call of the same request are two entries of their own shape."""
    client = make_client(llm, "openai", False, cache)
    plain = client.chat.completions.create(model="m", messages=MSGS)
    chunks = list(client.chat.completions.create(model="m", messages=MSGS, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert llm.calls == 2


def test_streamed_tool_call_is_not_stored(llm: FakeLLMServer, cache: Cache) -> None:
    """A streamed answer that calls a tool is handed to its caller but not stored."""
    client = make_client(llm, "openai", False, cache)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    for _ in range(2):
        stream = client.chat.completions.create(model="m", messages=MSGS, tools=tools,
                                                stream=True)
        chunks = list(stream)  # to its end: the call is over when the stream is
        assert any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
        assert from_cache(stream) is False
    assert llm.calls == 2
    assert cache.stats.not_cached == 2
