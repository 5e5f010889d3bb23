"""The request key of fleetcache.llm (pure): what is left out, what is normalised, what is
refused -- without any SDK call."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessage

from fleetcache.core.keys import request_hash
from fleetcache.llm.request import IGNORED, MARKER, build, canonical

MSGS = [{"role": "user", "content": "hi"}]


def key(**kwargs: Any) -> str:
    """The request hash of a chat call with ``kwargs``."""
    return request_hash(build("openai.chat.completions", "http://x/v1/", kwargs)[0])


def test_integral_floats_are_integers_at_every_depth() -> None:
    """0 and 0.0 (also nested, e.g. logit_bias) give one key; 0.5 stays a float."""
    assert key(model="m", messages=MSGS, temperature=0) == key(model="m", messages=MSGS,
                                                               temperature=0.0)
    assert key(model="m", messages=MSGS, logit_bias={"1": 1}) == key(
        model="m", messages=MSGS, logit_bias={"1": 1.0})
    assert canonical({"a": [0.5, 2.0, True]}, "x") == {"a": [0.5, 2, True]}


def test_none_not_given_and_stream_false_are_omitted() -> None:
    """Top-level None, NOT_GIVEN, omit and stream=False are the same as leaving them out."""
    base = key(model="m", messages=MSGS)
    assert key(model="m", messages=MSGS, top_p=None, seed=openai.NOT_GIVEN,
               stop=openai.omit, stream=False) == base
    assert key(model="m", messages=MSGS, stream=True) != base


def test_ignored_arguments_are_left_out() -> None:
    """Every IGNORED argument is left out of the request; extra_body and extra_query stay."""
    request, _ = build("a", "u", {"model": "m", **{name: "v" for name in IGNORED},
                                  "extra_body": {"k": 1}, "extra_query": {"q": "1"}})
    assert set(request) == {"model", "extra_body", "extra_query", MARKER}


def test_the_marker_names_the_api_and_base_url() -> None:
    """Two APIs or two base URLs never share a key."""
    one = build("openai.chat.completions", "http://a/v1/", {"model": "m"})[0]
    assert one[MARKER] == {"api": "openai.chat.completions", "base_url": "http://a/v1/"}
    assert request_hash(one) != request_hash(build("openai.responses", "http://a/v1/",
                                                   {"model": "m"})[0])
    assert request_hash(one) != request_hash(build("openai.chat.completions", "http://b/v1/",
                                                   {"model": "m"})[0])


def test_a_one_shot_iterator_is_read_once_and_sent_as_a_list() -> None:
    """A generator of messages is hashed and passed to the SDK as the same list."""
    request, call_kwargs = build("a", "u", {"messages": (m for m in MSGS)})
    assert request["messages"] == MSGS
    assert call_kwargs["messages"] == MSGS


def test_the_callers_arguments_reach_the_sdk_untouched() -> None:
    """Ignored, None and NOT_GIVEN arguments are still passed to the SDK as given."""
    given = {"model": "m", "timeout": 3, "top_p": None, "seed": openai.NOT_GIVEN}
    assert build("a", "u", given)[1] == given


def test_sdk_models_in_arguments_are_their_json_dump() -> None:
    """An argument holding a pydantic model is keyed by its JSON dump."""
    msg = ChatCompletionMessage(role="assistant", content="x")
    assert canonical(msg, "m") == {"role": "assistant", "content": "x"}


@pytest.mark.parametrize(("value", "match"), [
    ({"k": object()}, r"'messages\.k' is not JSON data"),
    ({1: "a"}, "non-string key"),
    (float("inf"), "not JSON data"),
    (b"bytes", "not JSON data"),
    ([iter([1])], "one-shot iterator"),
])
def test_non_json_arguments_raise_type_error_naming_them(value: Any, match: str) -> None:
    """Arguments that cannot be part of a key raise TypeError naming the argument."""
    with pytest.raises(TypeError, match=match):
        build("a", "u", {"messages": value})
