"""The fake LLM server, driven by the real `openai` and `anthropic` SDKs (no Redis needed).

Every reply is also checked against the SDKs' own pydantic models with full validation
(`model_validate`), which the SDKs themselves skip: a missing required field would show.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from fleetcache.testing.llm_server import FakeLLMServer, answer_text

MSGS: Any = [{"role": "user", "content": "What is the capital of France?"}]
TEXT = answer_text("gpt-4o", MSGS)
CHAT_TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
]
RESP_TOOLS: Any = [{"type": "function", "name": "lookup", "parameters": {}, "strict": False}]
ANTH_TOOLS: Any = [{"name": "search", "input_schema": {"type": "object"}}]


@pytest.fixture
def srv() -> Iterator[FakeLLMServer]:
    """A fresh server for each test, always stopped."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def oai(srv: FakeLLMServer) -> Iterator[openai.OpenAI]:
    """A real OpenAI client pointed at the server, without retries."""
    with openai.OpenAI(api_key="test", base_url=srv.openai_base_url, max_retries=0) as client:
        yield client


@pytest.fixture
def claude(srv: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    """A real Anthropic client pointed at the server, without retries."""
    with anthropic.Anthropic(
        api_key="test", base_url=srv.anthropic_base_url, max_retries=0
    ) as client:
        yield client


def post(url: str, body: Any, raw: bytes | None = None) -> tuple[int, bytes]:
    """POST JSON `body` (or the bytes `raw`) with urllib: (status, response body)."""
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def sse(payload: bytes) -> list[tuple[str | None, str]]:
    """The (event, data) pairs of a text/event-stream body."""
    out = []
    for frame in payload.decode().split("\n\n"):
        if not frame:
            continue
        fields = dict(line.split(": ", 1) for line in frame.split("\n"))
        out.append((fields.get("event"), fields["data"]))
    return out


def get_counts(srv: FakeLLMServer) -> Any:
    """`GET /_fake/calls`, as another process would read it."""
    with urllib.request.urlopen(srv.url + "/_fake/calls", timeout=10) as resp:
        return json.load(resp)


# -- OpenAI Chat Completions ------------------------------------------------------------------


def test_chat_non_stream_is_a_chat_completion_with_the_deterministic_text(
    oai: openai.OpenAI,
) -> None:
    """A non-stream chat call parses into a ChatCompletion carrying `answer_text`."""
    reply = oai.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert isinstance(reply, ChatCompletion)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == TEXT
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    other = oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert other.choices[0].message.content == answer_text("gpt-4o-mini", MSGS) != TEXT


def test_identical_requests_get_byte_identical_bodies(srv: FakeLLMServer) -> None:
    """Same request, same bytes, on every endpoint; another prompt, another body."""
    bodies: dict[str, dict[str, Any]] = {
        "/v1/chat/completions": {"model": "m", "messages": MSGS},
        "/v1/responses": {"model": "m", "input": "hi"},
        "/v1/messages": {"model": "m", "max_tokens": 5, "messages": MSGS},
    }
    for path, body in bodies.items():
        first, second = post(srv.url + path, body), post(srv.url + path, body)
        assert first[0] == 200
        assert first == second
        body_stream = {**body, "stream": True}
        assert post(srv.url + path, body_stream) == post(srv.url + path, body_stream)
    changed = {"model": "m", "messages": [{"role": "user", "content": "other"}]}
    assert post(srv.url + "/v1/chat/completions", changed) != first


def test_chat_stream_deltas_concatenate_to_the_non_stream_text(oai: openai.OpenAI) -> None:
    """Streamed chunks are ChatCompletionChunks whose deltas add up to the same text."""
    stream = oai.chat.completions.create(
        model="gpt-4o",
        messages=MSGS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 8
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_chat_tool_call(oai: openai.OpenAI) -> None:
    """With tools, chat answers a call to the first tool, streamed or not; "none" gives text."""
    reply = oai.chat.completions.create(model="gpt-4o", messages=MSGS, tools=CHAT_TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("get_weather", "{}")
    with oai.chat.completions.stream(model="gpt-4o", messages=MSGS, tools=CHAT_TOOLS) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].message.tool_calls is not None
    streamed = final.choices[0].message.tool_calls[0]
    assert (streamed.id, streamed.function.name, streamed.function.arguments) == (
        call.id,
        "get_weather",
        "{}",
    )
    plain = oai.chat.completions.create(
        model="gpt-4o",
        messages=MSGS,
        tools=CHAT_TOOLS,
        tool_choice="none",
    )
    assert plain.choices[0].message.content == TEXT


# -- OpenAI Responses ------------------------------------------------------------------------


def test_responses_non_stream_output_text(oai: openai.OpenAI) -> None:
    """A Responses call parses into a completed Response whose output_text is the answer."""
    reply = oai.responses.create(model="gpt-4o", input="hi", instructions="be brief")
    assert isinstance(reply, Response)
    assert reply.status == "completed"
    assert reply.output_text == answer_text("gpt-4o", "hi", "be brief")
    assert reply.output_text != answer_text("gpt-4o", "hi")
    assert reply.usage is not None
    assert reply.usage.total_tokens > 0


def test_responses_stream_events_end_with_completed(oai: openai.OpenAI) -> None:
    """Responses stream events parse, in order, numbered, and end with response.completed."""
    events = list(oai.responses.create(model="gpt-4o", input="hi", stream=True))
    types = [event.type for event in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types.count("response.output_text.delta") == 8
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == answer_text("gpt-4o", "hi")
    last = events[-1]
    assert last.type == "response.completed"
    assert last.response.output_text == deltas
    with oai.responses.stream(model="gpt-4o", input="hi") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == deltas


def test_responses_tool_call(oai: openai.OpenAI) -> None:
    """With tools, Responses outputs a function_call item, streamed or not."""
    reply = oai.responses.create(model="gpt-4o", input="hi", tools=RESP_TOOLS)
    (item,) = reply.output
    assert item.type == "function_call"
    assert (item.name, item.arguments, item.status) == ("lookup", "{}", "completed")
    assert reply.output_text == ""
    with oai.responses.stream(model="gpt-4o", input="hi", tools=RESP_TOOLS) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in types
    assert types[-1] == "response.completed"
    (streamed,) = final.output
    assert streamed.type == "function_call"
    assert (streamed.call_id, streamed.name, streamed.arguments) == (item.call_id, "lookup", "{}")
    plain = oai.responses.create(model="gpt-4o", input="hi", tools=RESP_TOOLS, tool_choice="none")
    assert plain.output_text == answer_text("gpt-4o", "hi")


# -- Anthropic Messages ----------------------------------------------------------------------


def test_anthropic_non_stream_message(claude: anthropic.Anthropic) -> None:
    """A Messages call parses into a Message with one text block and end_turn."""
    reply = claude.messages.create(
        model="claude-x",
        max_tokens=100,
        messages=MSGS,
        system="terse",
    )
    assert isinstance(reply, Message)
    assert (reply.type, reply.role, reply.stop_reason) == ("message", "assistant", "end_turn")
    (block,) = reply.content
    assert block.type == "text"
    assert block.text == answer_text("claude-x", MSGS, "terse")
    assert reply.usage.output_tokens > 0


def test_anthropic_stream_events(claude: anthropic.Anthropic) -> None:
    """Messages stream events parse in the documented order and carry the same text."""
    events = list(
        claude.messages.create(model="claude-x", max_tokens=100, messages=MSGS, stream=True)
    )
    types = [event.type for event in events]
    assert types == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 8,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == answer_text("claude-x", MSGS)
    with claude.messages.stream(model="claude-x", max_tokens=100, messages=MSGS) as stream:
        assert stream.get_final_text() == text
        assert stream.get_final_message().stop_reason == "end_turn"


def test_anthropic_tool_call(claude: anthropic.Anthropic) -> None:
    """With tools, Messages answers a tool_use block, streamed or not."""
    reply = claude.messages.create(
        model="claude-x",
        max_tokens=100,
        messages=MSGS,
        tools=ANTH_TOOLS,
    )
    assert reply.stop_reason == "tool_use"
    (block,) = reply.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("search", {})
    with claude.messages.stream(
        model="claude-x",
        max_tokens=100,
        messages=MSGS,
        tools=ANTH_TOOLS,
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in types  # the helper's event for an input_json_delta
    assert final.stop_reason == "tool_use"
    (streamed,) = final.content
    assert streamed.type == "tool_use"
    assert (streamed.id, streamed.name, streamed.input) == (block.id, "search", {})
    plain = claude.messages.create(
        model="claude-x",
        max_tokens=100,
        messages=MSGS,
        tools=ANTH_TOOLS,
        tool_choice={"type": "none"},
    )
    assert plain.content[0].type == "text"


# -- Async clients ---------------------------------------------------------------------------


def test_async_clients(srv: FakeLLMServer) -> None:
    """AsyncOpenAI and AsyncAnthropic get the same answers, streamed and not."""

    async def run() -> None:
        async with openai.AsyncOpenAI(
            api_key="test", base_url=srv.openai_base_url, max_retries=0
        ) as client:
            reply = await client.chat.completions.create(model="gpt-4o", messages=MSGS)
            assert reply.choices[0].message.content == TEXT
            stream = await client.chat.completions.create(
                model="gpt-4o",
                messages=MSGS,
                stream=True,
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            assert "".join(parts) == TEXT
            response = await client.responses.create(model="gpt-4o", input="hi")
            assert response.output_text == answer_text("gpt-4o", "hi")
        async with anthropic.AsyncAnthropic(
            api_key="test", base_url=srv.anthropic_base_url, max_retries=0
        ) as aclient:
            message = await aclient.messages.create(model="c", max_tokens=9, messages=MSGS)
            assert message.content[0].type == "text"
            assert message.content[0].text == answer_text("c", MSGS)
            async with aclient.messages.stream(model="c", max_tokens=9, messages=MSGS) as st:
                assert await st.get_final_text() == answer_text("c", MSGS)

    asyncio.run(run())
    assert srv.calls == 5
    assert srv.wait_for(lambda s: s.completed == 2)


# -- Strict wire formats ---------------------------------------------------------------------


def test_replies_validate_against_the_sdk_models(srv: FakeLLMServer) -> None:
    """Every body and stream event, text or tool call, passes the SDK models' validation."""
    chat_events: TypeAdapter[ChatCompletionChunk] = TypeAdapter(ChatCompletionChunk)
    resp_events: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    anth_events: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    cases: list[tuple[str, dict[str, Any], Any, TypeAdapter[Any]]] = [
        ("/v1/chat/completions", {"messages": MSGS}, ChatCompletion, chat_events),
        (
            "/v1/chat/completions",
            {"messages": MSGS, "tools": CHAT_TOOLS},
            ChatCompletion,
            chat_events,
        ),
        ("/v1/responses", {"input": "hi"}, Response, resp_events),
        ("/v1/responses", {"input": "hi", "tools": RESP_TOOLS}, Response, resp_events),
        ("/v1/messages", {"messages": MSGS}, Message, anth_events),
        ("/v1/messages", {"messages": MSGS, "tools": ANTH_TOOLS}, Message, anth_events),
    ]
    for path, extra, model, events in cases:
        body = {"model": "m", **extra}
        status, payload = post(srv.url + path, body)
        assert status == 200
        model.model_validate_json(payload)
        status, payload = post(
            srv.url + path, {**body, "stream": True, "stream_options": {"include_usage": True}}
        )
        assert status == 200
        frames = sse(payload)
        if path == "/v1/chat/completions":
            assert frames[-1] == (None, "[DONE]")
            frames = frames[:-1]
        for event, data in frames:
            parsed = events.validate_json(data)
            if event is not None:
                assert parsed.type == event


# -- Counting --------------------------------------------------------------------------------


def test_calls_are_counted_on_arrival_before_the_latency(
    srv: FakeLLMServer, oai: openai.OpenAI
) -> None:
    """A request counts as soon as it arrives, while its reply still waits out the latency."""
    srv.latency = 2.0
    replied = threading.Event()

    def call() -> None:
        oai.chat.completions.create(model="m", messages=MSGS)
        replied.set()

    worker = threading.Thread(target=call)
    started = time.monotonic()
    worker.start()
    assert srv.wait_for(lambda s: s.calls == 1, timeout=5)
    assert not replied.is_set()
    assert time.monotonic() - started < 2.0
    assert srv.calls_for("/v1/chat/completions") == 1
    worker.join(timeout=10)
    assert replied.is_set()
    assert time.monotonic() - started >= 2.0


def test_counts_over_http_and_reset(
    srv: FakeLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    """`GET /_fake/calls` reports counters by path; `POST /_fake/reset` and reset() zero them."""
    assert get_counts(srv) == {"total": 0, "by_path": {}, "completed": 0, "abandoned": 0}
    oai.chat.completions.create(model="m", messages=MSGS)
    oai.chat.completions.create(model="m", messages=MSGS)
    oai.responses.create(model="m", input="x")
    claude.messages.create(model="m", max_tokens=5, messages=MSGS)
    list(oai.chat.completions.create(model="m", messages=MSGS, stream=True))
    assert srv.wait_for(lambda s: s.completed == 1)
    assert get_counts(srv) == {
        "total": 5,
        "by_path": {"/v1/chat/completions": 3, "/v1/responses": 1, "/v1/messages": 1},
        "completed": 1,
        "abandoned": 0,
    }
    assert (srv.calls, srv.calls_for("/v1/messages"), srv.calls_for("/nope")) == (5, 1, 0)
    assert post(srv.url + "/_fake/reset", {})[0] == 200
    assert srv.calls == srv.completed == 0
    assert get_counts(srv)["total"] == 0
    oai.chat.completions.create(model="m", messages=MSGS)
    assert srv.calls == 1
    srv.reset()
    assert get_counts(srv) == {"total": 0, "by_path": {}, "completed": 0, "abandoned": 0}


# -- Failures --------------------------------------------------------------------------------


def test_fail_500_model_raises_internal_server_error(
    srv: FakeLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    """Model "fail-500" gets an HTTP 500 the SDKs raise as InternalServerError, and counts."""
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(model="fail-500", messages=MSGS, stream=True)
    assert caught.value.status_code == 500
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(model="fail-500", input="hi")
    with pytest.raises(anthropic.InternalServerError) as anth:
        claude.messages.create(model="fail-500", max_tokens=5, messages=MSGS)
    assert anth.value.body == {
        "type": "error",
        "error": {"type": "api_error", "message": "Simulated upstream failure (model 'fail-500')."},
    }
    assert srv.calls == 3


def test_bad_bodies_get_400_and_unknown_paths_404(srv: FakeLLMServer) -> None:
    """Non-JSON or model-less bodies get a 400 in the endpoint's error style; other paths 404."""
    status, body = post(srv.url + "/v1/chat/completions", None, raw=b"not json")
    assert status == 400
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    status, body = post(srv.url + "/v1/responses", {"input": "no model"})
    assert status == 400
    assert "model" in json.loads(body)["error"]["message"]
    status, body = post(srv.url + "/v1/messages", [1, 2])
    assert status == 400
    assert json.loads(body)["type"] == "error"
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert post(srv.url + "/v1/embeddings", {"model": "m"})[0] == 404
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(srv.url + "/v1/models", timeout=10)
    caught.value.close()
    assert caught.value.code == 404
    assert srv.calls == 3


# -- Streaming behaviour ---------------------------------------------------------------------


def test_chunks_arrive_incrementally(srv: FakeLLMServer, oai: openai.OpenAI) -> None:
    """With a chunk delay, the first chunk reaches the client long before the stream ends."""
    srv.chunk_delay = 0.05
    started = time.monotonic()
    arrivals = [
        time.monotonic() - started
        for _ in oai.chat.completions.create(model="m", messages=MSGS, stream=True)
    ]
    assert len(arrivals) == 10  # role, 8 pieces, finish
    total = time.monotonic() - started
    assert total >= 9 * 0.05
    assert arrivals[0] < total / 2
    assert arrivals[4] < arrivals[-1]


def test_abandoned_stream_is_counted_not_completed(
    srv: FakeLLMServer, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    """A client closing a stream after 2 chunks shows up in `abandoned`, not `completed`."""
    srv.chunk_delay = 0.05
    stream = oai.chat.completions.create(model="m", messages=MSGS, stream=True)
    chunks = iter(stream)
    next(chunks)
    next(chunks)
    stream.close()
    assert srv.wait_for(lambda s: s.abandoned == 1, timeout=5)
    assert srv.completed == 0
    events = claude.messages.create(model="m", max_tokens=5, messages=MSGS, stream=True)
    for n, _ in enumerate(events):
        if n == 1:
            break
    events.close()
    assert srv.wait_for(lambda s: s.abandoned == 2, timeout=5)
    list(oai.chat.completions.create(model="m", messages=MSGS, stream=True))
    assert srv.wait_for(lambda s: s.completed == 1, timeout=5)
    assert get_counts(srv)["abandoned"] == 2


# -- Lifecycle -------------------------------------------------------------------------------


def test_stop_cuts_idle_waiting_and_streaming_connections_at_once() -> None:
    """stop() returns at once despite a keep-alive client, a request mid-latency, a stream."""
    srv = FakeLLMServer().start()
    idle, waiting, streaming = (
        openai.OpenAI(api_key="test", base_url=srv.openai_base_url, max_retries=0) for _ in range(3)
    )
    failures: list[str] = []
    workers: list[threading.Thread] = []
    first_chunk = threading.Event()

    def call() -> None:
        try:
            waiting.chat.completions.create(model="m", messages=MSGS)
        except openai.APIConnectionError:
            failures.append("waiting")

    def stream() -> None:
        try:
            for _ in streaming.chat.completions.create(model="m", messages=MSGS, stream=True):
                first_chunk.set()
        except openai.APIConnectionError:
            failures.append("streaming")

    try:
        idle.chat.completions.create(model="m", messages=MSGS)  # its connection stays open
        srv.chunk_delay = 60.0
        workers.append(threading.Thread(target=stream))
        workers[-1].start()
        assert first_chunk.wait(timeout=5)
        srv.latency = 60.0
        workers.append(threading.Thread(target=call))
        workers[-1].start()
        assert srv.wait_for(lambda s: s.calls == 3, timeout=5)
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 5
        for worker in workers:
            worker.join(timeout=10)
            assert not worker.is_alive()
        assert sorted(failures) == ["streaming", "waiting"]
        assert (srv.completed, srv.abandoned) == (0, 1)
        srv.stop()  # idempotent
        with pytest.raises(RuntimeError):
            _ = srv.url
    finally:
        srv.stop()
        for client in (idle, waiting, streaming):
            client.close()


def test_cli_serves_until_interrupted() -> None:
    """`python -m fleetcache.testing.llm_server --port 0` prints its URL and serves until SIGINT."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetcache.testing.llm_server", "--port", "0", "--latency", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Fake LLM server on http://127.0.0.1:")
        url = line.split()[-1]
        status, body = post(url + "/v1/chat/completions", {"model": "m", "messages": MSGS})
        assert status == 200
        assert json.loads(body)["choices"][0]["message"]["content"] == answer_text("m", MSGS)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
