"""cache_if predicates: the SDK shapes they read, the combinators, repr and validation."""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetcache import cacheable
from fleetcache.cacheable import Predicate, max_temperature, no_tool_calls, not_streaming

# --- Realistic payloads (the SDKs' create() kwargs and response.model_dump() dicts) ---------

CHAT_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "temperature": 0,
}

CHAT_PLAIN: dict[str, Any] = {
    "id": "chatcmpl-AbC123",
    "object": "chat.completion",
    "created": 1727000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Paris.",
                "refusal": None,
                "tool_calls": None,
                "function_call": None,
                "audio": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
    "system_fingerprint": "fp_0123456789",
    "service_tier": "default",
}

CHAT_TOOL_CALLS: dict[str, Any] = copy.deepcopy(CHAT_PLAIN)
CHAT_TOOL_CALLS["choices"][0]["message"].update(
    content=None,
    tool_calls=[
        {
            "id": "call_abc123",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ],
)
CHAT_TOOL_CALLS["choices"][0]["finish_reason"] = "tool_calls"

CHAT_FUNCTION_CALL: dict[str, Any] = copy.deepcopy(CHAT_PLAIN)
CHAT_FUNCTION_CALL["choices"][0]["message"].update(
    content=None, function_call={"name": "get_weather", "arguments": '{"city": "Paris"}'}
)
CHAT_FUNCTION_CALL["choices"][0]["finish_reason"] = "function_call"

CHAT_TOOL_RESULT_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "temperature": 0,
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": CHAT_TOOL_CALLS["choices"][0][
            "message"]["tool_calls"]},
        {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temp_c": 18}'},
    ],
}

CHAT_LEGACY_FUNCTION_RESULT_REQUEST: dict[str, Any] = {
    "model": "gpt-3.5-turbo",
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "function", "name": "get_weather", "content": '{"temp_c": 18}'},
    ],
}

RESPONSES_REQUEST: dict[str, Any] = {
    "model": "gpt-4.1",
    "input": [{"role": "user", "content": "Say hi"}],
    "temperature": 0.0,
}

_RESPONSE_BASE: dict[str, Any] = {
    "id": "resp_67ccd2bed1ec8190",
    "object": "response",
    "created_at": 1741476542,
    "status": "completed",
    "model": "gpt-4.1-2025-04-14",
    "parallel_tool_calls": True,
    "temperature": 0.0,
    "tool_choice": "auto",
    "tools": [],
    "usage": {"input_tokens": 36, "output_tokens": 87, "total_tokens": 123},
}

RESPONSES_MESSAGE: dict[str, Any] = {
    **_RESPONSE_BASE,
    "output": [
        {"id": "rs_1", "type": "reasoning", "summary": []},
        {
            "id": "msg_67ccd2bf17f0",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hi!", "annotations": []}],
        },
    ],
}

RESPONSES_FUNCTION_CALL: dict[str, Any] = {
    **_RESPONSE_BASE,
    "output": [
        {
            "id": "fc_12345xyz",
            "type": "function_call",
            "call_id": "call_12345xyz",
            "name": "get_weather",
            "arguments": '{"location": "Paris, France"}',
            "status": "completed",
        }
    ],
}

RESPONSES_TOOL_RESULT_REQUEST: dict[str, Any] = {
    "model": "gpt-4.1",
    "input": [
        {"role": "user", "content": "Weather in Paris?"},
        RESPONSES_FUNCTION_CALL["output"][0],
        {"type": "function_call_output", "call_id": "call_12345xyz", "output": '{"temp_c": 18}'},
    ],
}

ANTHROPIC_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello, Claude"}]}],
    "temperature": 0.0,
}

ANTHROPIC_TEXT: dict[str, Any] = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hi! My name is Claude.", "citations": None}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503},
}

ANTHROPIC_TOOL_USE: dict[str, Any] = {
    **ANTHROPIC_TEXT,
    "content": [
        {"type": "text", "text": "Let me check the weather.", "citations": None},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA"},
        },
    ],
    "stop_reason": "tool_use",
}

ANTHROPIC_TOOL_RESULT_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "messages": [
        {"role": "user", "content": "Weather in San Francisco?"},
        {"role": "assistant", "content": ANTHROPIC_TOOL_USE["content"]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                    "content": "15 degrees",
                }
            ],
        },
    ],
}


class Dumpable:
    """Stands in for an SDK pydantic model: only ``model_dump()``."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def model_dump(self) -> Any:
        return copy.deepcopy(self.data)


# --- no_tool_calls: values ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "value"),
    [
        (CHAT_REQUEST, CHAT_PLAIN),
        (RESPONSES_REQUEST, RESPONSES_MESSAGE),
        (ANTHROPIC_REQUEST, ANTHROPIC_TEXT),
    ],
    ids=["chat", "responses", "anthropic"],
)
def test_plain_answers_are_cacheable(request_: dict[str, Any], value: dict[str, Any]) -> None:
    """A text answer to a request without tool results passes no_tool_calls in every API."""
    assert no_tool_calls(request_, value) is True


@pytest.mark.parametrize(
    ("request_", "value"),
    [
        (CHAT_REQUEST, CHAT_TOOL_CALLS),
        (CHAT_REQUEST, CHAT_FUNCTION_CALL),
        (RESPONSES_REQUEST, RESPONSES_FUNCTION_CALL),
        (ANTHROPIC_REQUEST, ANTHROPIC_TOOL_USE),
    ],
    ids=["chat-tool_calls", "chat-function_call", "responses-function_call", "anthropic-tool_use"],
)
def test_values_calling_tools_are_refused(request_: dict[str, Any], value: dict[str, Any]) -> None:
    """A value that calls a tool fails no_tool_calls in every API."""
    assert no_tool_calls(request_, value) is False


def test_chat_each_tool_signal_alone_refuses() -> None:
    """tool_calls, function_call, and either finish_reason each refuse on their own."""
    for message_update, finish in [
        ({"tool_calls": CHAT_TOOL_CALLS["choices"][0]["message"]["tool_calls"]}, "stop"),
        ({"function_call": {"name": "f", "arguments": "{}"}}, "stop"),
        ({}, "tool_calls"),
        ({}, "function_call"),
    ]:
        value = copy.deepcopy(CHAT_PLAIN)
        value["choices"][0]["message"].update(message_update)
        value["choices"][0]["finish_reason"] = finish
        assert no_tool_calls(CHAT_REQUEST, value) is False, (message_update, finish)


def test_chat_empty_tool_calls_and_other_finish_reasons_pass() -> None:
    """An empty tool_calls list and finish_reason length/content_filter are not tool calls."""
    value = copy.deepcopy(CHAT_PLAIN)
    value["choices"][0]["message"]["tool_calls"] = []
    for finish in ("stop", "length", "content_filter", None):
        value["choices"][0]["finish_reason"] = finish
        assert no_tool_calls(CHAT_REQUEST, value) is True


def test_chat_any_choice_with_a_tool_call_refuses() -> None:
    """With n > 1 choices, one choice calling a tool is enough to refuse."""
    value = copy.deepcopy(CHAT_PLAIN)
    second = copy.deepcopy(CHAT_TOOL_CALLS["choices"][0])
    second["index"] = 1
    value["choices"].append(second)
    assert no_tool_calls(CHAT_REQUEST, value) is False


@pytest.mark.parametrize(
    "kind",
    [
        "function_call", "custom_tool_call", "file_search_call", "web_search_call",
        "computer_call", "code_interpreter_call", "image_generation_call", "local_shell_call",
        "shell_call", "apply_patch_call", "tool_search_call", "mcp_call", "mcp_list_tools",
        "mcp_approval_request", "function_call_output", "program", "some_future_tool_call",
    ],
)
def test_responses_tool_output_items_refuse(kind: str) -> None:
    """Every Responses output item other than message/reasoning/compaction refuses."""
    value = copy.deepcopy(RESPONSES_MESSAGE)
    value["output"].append({"id": "x_1", "type": kind, "status": "completed"})
    assert no_tool_calls(RESPONSES_REQUEST, value) is False


def test_responses_plain_item_kinds_pass() -> None:
    """message, reasoning and compaction items, and an empty output, pass."""
    value = copy.deepcopy(RESPONSES_MESSAGE)
    value["output"].append({"id": "cmp_1", "type": "compaction", "encrypted_content": "..."})
    assert no_tool_calls(RESPONSES_REQUEST, value) is True
    assert no_tool_calls(RESPONSES_REQUEST, {**RESPONSES_MESSAGE, "output": []}) is True


@pytest.mark.parametrize(
    "kind",
    [
        "tool_use", "server_tool_use", "mcp_tool_use", "web_search_tool_result",
        "code_execution_tool_result", "container_upload",
    ],
)
def test_anthropic_tool_blocks_refuse(kind: str) -> None:
    """Every Anthropic content block other than text/thinking refuses, even with end_turn."""
    value = copy.deepcopy(ANTHROPIC_TEXT)
    value["content"].append({"type": kind, "id": "srvtoolu_1", "name": "web_search", "input": {}})
    assert no_tool_calls(ANTHROPIC_REQUEST, value) is False


def test_anthropic_thinking_passes_and_stop_reason_alone_refuses() -> None:
    """thinking blocks pass; stop_reason tool_use refuses even without a tool block."""
    value = copy.deepcopy(ANTHROPIC_TEXT)
    value["content"].insert(0, {"type": "thinking", "thinking": "Hmm.", "signature": "sig"})
    value["content"].insert(1, {"type": "redacted_thinking", "data": "opaque"})
    assert no_tool_calls(ANTHROPIC_REQUEST, value) is True
    assert no_tool_calls(ANTHROPIC_REQUEST, {**ANTHROPIC_TEXT, "stop_reason": "tool_use"}) is False


# --- no_tool_calls: requests carrying tool results ------------------------------------------


@pytest.mark.parametrize(
    ("request_", "value"),
    [
        (CHAT_TOOL_RESULT_REQUEST, CHAT_PLAIN),
        (CHAT_LEGACY_FUNCTION_RESULT_REQUEST, CHAT_PLAIN),
        (RESPONSES_TOOL_RESULT_REQUEST, RESPONSES_MESSAGE),
        (ANTHROPIC_TOOL_RESULT_REQUEST, ANTHROPIC_TEXT),
    ],
    ids=["chat-tool", "chat-function", "responses-function_call_output", "anthropic-tool_result"],
)
def test_requests_with_tool_results_are_refused(
    request_: dict[str, Any], value: dict[str, Any]
) -> None:
    """A plain answer to a request that carries tool results still fails no_tool_calls."""
    assert no_tool_calls(request_, value) is False


@pytest.mark.parametrize(
    "kind",
    [
        "function_call_output", "custom_tool_call_output", "computer_call_output",
        "local_shell_call_output", "shell_call_output", "apply_patch_call_output",
        "tool_search_output", "mcp_call", "file_search_call", "mcp_approval_response",
    ],
)
def test_responses_input_tool_items_refuse(kind: str) -> None:
    """Responses input items that are (or embed) tool results refuse."""
    request = {**RESPONSES_REQUEST, "input": [*RESPONSES_REQUEST["input"], {"type": kind}]}
    assert no_tool_calls(request, RESPONSES_MESSAGE) is False


def test_responses_plain_inputs_pass() -> None:
    """A string input, typed messages, item references and embeddings-style lists pass."""
    for input_ in [
        "Say hi",
        [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        [{"type": "item_reference", "id": "msg_1"}, {"type": "reasoning", "summary": []}],
        ["a string", "another"],
    ]:
        assert no_tool_calls({**RESPONSES_REQUEST, "input": input_}, RESPONSES_MESSAGE) is True


@pytest.mark.parametrize("kind", ["tool_result", "mcp_tool_result", "web_search_tool_result"])
def test_anthropic_tool_result_blocks_in_requests_refuse(kind: str) -> None:
    """Anthropic message blocks of type tool_result or *_tool_result refuse."""
    request = copy.deepcopy(ANTHROPIC_TOOL_RESULT_REQUEST)
    request["messages"][2]["content"][0]["type"] = kind
    del request["messages"][1]  # not the assistant's tool_use that decides
    assert no_tool_calls(request, ANTHROPIC_TEXT) is False


def test_user_content_blocks_in_requests_pass() -> None:
    """Images, documents and Chat content parts in a request are not tool results."""
    request = copy.deepcopy(ANTHROPIC_REQUEST)
    request["messages"][0]["content"] += [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "document", "source": {"type": "text", "data": "x", "media_type": "text/plain"}},
    ]
    assert no_tool_calls(request, ANTHROPIC_TEXT) is True
    chat = copy.deepcopy(CHAT_REQUEST)
    chat["messages"][1]["content"] = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    assert no_tool_calls(chat, CHAT_PLAIN) is True


# --- model_dump objects, odd and non-dict inputs --------------------------------------------


def test_model_dump_objects_are_read() -> None:
    """Values, requests and nested items with model_dump() are read through it."""
    assert no_tool_calls(Dumpable(CHAT_REQUEST), Dumpable(CHAT_PLAIN)) is True
    assert no_tool_calls(CHAT_REQUEST, Dumpable(CHAT_TOOL_CALLS)) is False
    assert no_tool_calls(ANTHROPIC_REQUEST, Dumpable(ANTHROPIC_TOOL_USE)) is False
    # Responses: output items passed back in `input` as SDK objects (`input += response.output`)
    request = {
        **RESPONSES_REQUEST,
        "input": [
            *RESPONSES_REQUEST["input"],
            Dumpable(RESPONSES_FUNCTION_CALL["output"][0]),
            Dumpable({"type": "function_call_output", "call_id": "c", "output": "18"}),
        ],
    }
    assert no_tool_calls(request, RESPONSES_MESSAGE) is False
    assert max_temperature(0.0)(Dumpable({"temperature": 0}), None) is True
    assert not_streaming(Dumpable({"stream": True}), None) is False


@pytest.mark.parametrize(
    "other",
    [None, "a string", 42, 1.5, [{"choices": []}], object(), Dumpable([1])],
)
def test_non_dict_inputs_pass(other: Any) -> None:
    """Non-dict requests/values (a chunk list without tool calls too) give nothing to refuse."""
    for p in (no_tool_calls, max_temperature(0.0), not_streaming):
        assert p(other, other) is True
    assert no_tool_calls(CHAT_REQUEST, other) is True


def test_malformed_shapes_do_not_raise() -> None:
    """Wrongly typed fields are skipped instead of raising."""
    value = {"choices": [None, "x", {"message": None}, {"message": "str"}], "output": "x",
             "content": "text", "stop_reason": None}
    request = {"messages": "x", "input": [None, 3, {"type": 7}]}
    assert no_tool_calls(request, value) is True
    assert no_tool_calls({"messages": [None, {"content": [None, {"type": None}]}]}, {}) is True


# --- max_temperature ------------------------------------------------------------------------


def test_max_temperature_compares_with_limit() -> None:
    """Temperatures at or below the limit pass, above it fail; ints and floats alike."""
    p = max_temperature(0.5)
    assert p({"temperature": 0}, None) is True
    assert p({"temperature": 0.5}, None) is True
    assert p({"temperature": 0.51}, None) is False
    assert p({"temperature": 2}, None) is False
    assert max_temperature(0)({"temperature": 0.0}, None) is True


def test_missing_temperature_counts_as_one() -> None:
    """A missing or None temperature is the providers' default 1.0."""
    for request in ({}, {"temperature": None}, {"model": "o3", "messages": []}):
        assert max_temperature(0.0)(request, None) is False
        assert max_temperature(0.99)(request, None) is False
        assert max_temperature(1.0)(request, None) is True
        assert max_temperature(2)(request, None) is True


@pytest.mark.parametrize("bad", ["0", True, False, math.nan, math.inf, [0]])
def test_non_numeric_temperatures_fail(bad: Any) -> None:
    """A temperature that is not a real number (bools, NaN included) is refused."""
    assert max_temperature(2.0)({"temperature": bad}, None) is False


@pytest.mark.parametrize(
    ("limit", "exc"),
    [(-0.1, ValueError), (math.nan, ValueError), (math.inf, ValueError), (-math.inf, ValueError),
     ("0", TypeError), (None, TypeError), (True, TypeError)],
)
def test_max_temperature_limit_validated(limit: Any, exc: type[Exception]) -> None:
    """An invalid limit raises at construction."""
    with pytest.raises(exc):
        max_temperature(limit)


# --- not_streaming --------------------------------------------------------------------------


def test_not_streaming() -> None:
    """Requests with a truthy stream fail; absent, False or None stream pass."""
    assert not_streaming({**CHAT_REQUEST, "stream": True}, CHAT_PLAIN) is False
    assert not_streaming({**CHAT_REQUEST, "stream": False}, CHAT_PLAIN) is True
    assert not_streaming({**CHAT_REQUEST, "stream": None}, CHAT_PLAIN) is True
    assert not_streaming(CHAT_REQUEST, CHAT_PLAIN) is True


# --- combinators and repr -------------------------------------------------------------------


def is_gpt(request: Any, value: Any) -> bool:
    """A plain function predicate: the request names an OpenAI GPT model."""
    return isinstance(request, dict) and str(request.get("model", "")).startswith("gpt")


def test_design_example() -> None:
    """The design's example decides plain, tool-calling and hot requests as documented."""
    p = cacheable.no_tool_calls & cacheable.max_temperature(0.0)
    assert p(CHAT_REQUEST, CHAT_PLAIN) is True
    assert p(CHAT_REQUEST, CHAT_TOOL_CALLS) is False
    assert p({**CHAT_REQUEST, "temperature": 0.7}, CHAT_PLAIN) is False
    assert repr(p) == "no_tool_calls & max_temperature(0.0)"


def test_and_or_not_truth_tables() -> None:
    """&, | and ~ follow boolean logic over always/never."""
    t, f = cacheable.always, cacheable.never
    for a in (t, f):
        for b in (t, f):
            av, bv = a is t, b is t
            assert (a & b)(None, None) is (av and bv)
            assert (a | b)(None, None) is (av or bv)
        assert (~a)(None, None) is (a is not t)


def test_plain_functions_combine_on_both_sides() -> None:
    """A plain function combines with a predicate whichever side it is on."""
    for p in (no_tool_calls & is_gpt, is_gpt & no_tool_calls):
        assert isinstance(p, Predicate)
        assert p(CHAT_REQUEST, CHAT_PLAIN) is True
        assert p(ANTHROPIC_REQUEST, ANTHROPIC_TEXT) is False
        assert p(CHAT_REQUEST, CHAT_TOOL_CALLS) is False
    for p in (cacheable.never | is_gpt, is_gpt | cacheable.never):
        assert p(CHAT_REQUEST, None) is True
        assert p(ANTHROPIC_REQUEST, None) is False
    assert repr(is_gpt & no_tool_calls) == "is_gpt & no_tool_calls"
    assert repr(no_tool_calls | is_gpt) == "no_tool_calls | is_gpt"


def test_predicate_wrapper_and_decorator() -> None:
    """predicate() wraps and decorates functions, keeps predicates, refuses non-callables."""

    @cacheable.predicate
    def short_answer(request: Any, value: Any) -> bool:
        return len(str(value)) < 10

    assert isinstance(short_answer, Predicate)
    assert short_answer(None, "ok") is True
    assert repr(~short_answer) == "~test_predicate_wrapper_and_decorator.<locals>.short_answer"
    assert cacheable.predicate(no_tool_calls) is no_tool_calls
    def truthy(request: Any, value: Any) -> Any:
        return 1

    both = cacheable.predicate(is_gpt) & truthy
    assert both(CHAT_REQUEST, None) is True  # truthy results become bools
    with pytest.raises(TypeError):
        cacheable.predicate(3)  # type: ignore[arg-type]


def test_non_callables_do_not_combine() -> None:
    """& and | with a non-callable raise TypeError instead of building a broken predicate."""
    with pytest.raises(TypeError):
        no_tool_calls & 3  # type: ignore[operator]
    with pytest.raises(TypeError):
        "x" | no_tool_calls  # type: ignore[operator]


def test_repr_is_readable_and_parenthesised() -> None:
    """repr flattens chains and parenthesises only where precedence needs it."""
    a, b, c = no_tool_calls, not_streaming, max_temperature(0.2)
    assert repr(a & b & c) == "no_tool_calls & not_streaming & max_temperature(0.2)"
    assert repr(a | (b | c)) == "no_tool_calls | not_streaming | max_temperature(0.2)"
    assert repr((a | b) & c) == "(no_tool_calls | not_streaming) & max_temperature(0.2)"
    assert repr(~(a & b)) == "~(no_tool_calls & not_streaming)"
    assert repr(~a | ~b) == "~no_tool_calls | ~not_streaming"
    assert repr(cacheable.always) == "always"
    assert repr(cacheable.never) == "never"
    assert repr(max_temperature(1)) == "max_temperature(1.0)"


def test_predicates_hash_and_compare_by_identity() -> None:
    """Predicates are hashable; equal only to themselves."""
    assert len({no_tool_calls, no_tool_calls, not_streaming}) == 2
    assert max_temperature(0.0) != max_temperature(0.0)
    assert (a := no_tool_calls & not_streaming) == a


def test_predicates_pickle() -> None:
    """Built-in predicates and their combinations survive pickling (spawned workers)."""
    p = (no_tool_calls & max_temperature(0.3)) | ~not_streaming | cacheable.never
    q = pickle.loads(pickle.dumps(p))
    assert repr(q) == repr(p)
    for request in (CHAT_REQUEST, {**CHAT_REQUEST, "temperature": 0.9}, {"stream": True}):
        for value in (CHAT_PLAIN, CHAT_TOOL_CALLS):
            assert q(request, value) is p(request, value)


def test_evaluation_short_circuits_left_to_right() -> None:
    """& stops at the first False, | at the first True."""
    calls: list[str] = []

    def record(name: str, result: bool) -> Predicate:
        def fn(request: Any, value: Any) -> bool:
            calls.append(name)
            return result

        return cacheable.predicate(fn)

    (record("a", False) & record("b", True))(None, None)
    (record("c", True) | record("d", False))(None, None)
    assert calls == ["a", "c"]


# --- properties -----------------------------------------------------------------------------

_requests: st.SearchStrategy[Any] = st.sampled_from(
    [CHAT_REQUEST, CHAT_TOOL_RESULT_REQUEST, RESPONSES_REQUEST, RESPONSES_TOOL_RESULT_REQUEST,
     ANTHROPIC_REQUEST, ANTHROPIC_TOOL_RESULT_REQUEST, None, "text"]
) | st.builds(
    dict,
    temperature=st.none() | st.floats(0, 2),
    stream=st.booleans(),
    messages=st.just(CHAT_REQUEST["messages"]),
)
_values = st.sampled_from(
    [CHAT_PLAIN, CHAT_TOOL_CALLS, CHAT_FUNCTION_CALL, RESPONSES_MESSAGE, RESPONSES_FUNCTION_CALL,
     ANTHROPIC_TEXT, ANTHROPIC_TOOL_USE, None, [CHAT_PLAIN]]
)
_leaves = st.sampled_from(
    [no_tool_calls, not_streaming, max_temperature(0.0), max_temperature(0.7), cacheable.always,
     cacheable.never, is_gpt]
)


@given(a=_leaves, b=_leaves, request_=_requests, value=_values)
def test_de_morgan(a: Any, b: Any, request_: Any, value: Any) -> None:
    """~(a & b) equals ~a | ~b, and ~(a | b) equals ~a & ~b, on generated payloads."""
    pa, pb = cacheable.predicate(a), cacheable.predicate(b)
    assert (~(pa & pb))(request_, value) == (~pa | ~pb)(request_, value)
    assert (~(pa | pb))(request_, value) == (~pa & ~pb)(request_, value)
    assert (a & pb)(request_, value) == (bool(a(request_, value)) and pb(request_, value))


@given(
    temperature=st.floats(0, 2, allow_nan=False) | st.integers(0, 2),
    limit=st.floats(0, 2, allow_nan=False),
)
def test_max_temperature_matches_comparison(temperature: float, limit: float) -> None:
    """max_temperature(limit) is exactly temperature <= limit for any real temperature."""
    assert max_temperature(limit)({"temperature": temperature}, None) is (temperature <= limit)


@given(value=_values, request_=_requests)
def test_predicates_do_not_mutate_inputs(value: Any, request_: Any) -> None:
    """Predicates only read: requests and values are unchanged after evaluation."""
    before = copy.deepcopy((request_, value))
    (no_tool_calls & not_streaming & max_temperature(0.5))(request_, value)
    assert (request_, value) == before


STREAM_TOOL_VALUES = {
    "chat delta tool_calls": [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c"}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ],
    "chat finish_reason only": [
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ],
    "responses output item": [
        {"type": "response.created", "response": {"output": []}},
        {"type": "response.output_item.added", "item": {"type": "function_call", "name": "f"}},
    ],
    "responses completed": [
        {"type": "response.completed", "response": {"output": [{"type": "function_call"}]}},
    ],
    "anthropic content block": [
        {"type": "message_start", "message": {"content": []}},
        {"type": "content_block_start", "content_block": {"type": "tool_use", "name": "f"}},
    ],
    "anthropic stop reason": [
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}},
    ],
}

STREAM_PLAIN_VALUES = {
    "chat": [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]},
    ],
    "responses": [
        {"type": "response.output_item.added", "item": {"type": "message"}},
        {"type": "response.completed", "response": {"output": [{"type": "message"}]}},
    ],
    "anthropic": [
        {"type": "message_start", "message": {"content": []}},
        {"type": "content_block_start", "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "message_stop"},
    ],
}


@pytest.mark.parametrize("name", sorted(STREAM_TOOL_VALUES))
def test_streamed_tool_calls_refused(name: str) -> None:
    """A stored stream (list of chunks/events) that calls a tool is refused by no_tool_calls."""
    assert no_tool_calls({"stream": True}, STREAM_TOOL_VALUES[name]) is False


@pytest.mark.parametrize("name", sorted(STREAM_PLAIN_VALUES))
def test_streamed_plain_answers_pass(name: str) -> None:
    """A stored stream with only text chunks/events passes no_tool_calls."""
    assert no_tool_calls({"stream": True}, STREAM_PLAIN_VALUES[name]) is True
