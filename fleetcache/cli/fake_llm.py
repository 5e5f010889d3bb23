"""Requests and completions of the demo and the benchmarks.

``make_request(i)``: the demo's ``i``-th chat completion request (its answers come from the
simulated LLM server, :mod:`fleetcache.testing.llm_server`); ``sized_completion(size)``: a
realistic completion of a given JSON size, the value of the benchmarks.  Everything here is
deterministic.
"""

from __future__ import annotations

from typing import Any

import orjson

MODEL = "gpt-4.1-mini"
QUESTIONS = (
    "Summarise the plot of Hamlet in two sentences.",
    "What is the capital of Australia?",
    "Explain what a Bloom filter is to a new engineer.",
    "Write a haiku about caching.",
    "Translate 'good morning' into Japanese.",
    "List three uses of Redis besides caching.",
    "What does HTTP status 429 mean?",
    "Give a one-line definition of idempotence.",
    "Why is the sky blue?",
    "Suggest a name for a cat that likes keyboards.",
)


def make_request(i: int) -> dict[str, Any]:
    """The ``i``-th chat-completion-like request."""
    question = QUESTIONS[i % len(QUESTIONS)]
    if i >= len(QUESTIONS):
        question += f" (variant {i // len(QUESTIONS)})"
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question},
        ],
        "temperature": 0,
    }


def sized_completion(size: int) -> dict[str, Any]:
    """A realistic chat completion whose JSON is about ``size`` bytes."""
    value: dict[str, Any] = {
        "id": "chatcmpl-BenchHit0000000000000000000",
        "object": "chat.completion",
        "created": 1_735_000_000,
        "model": "gpt-4.1-mini-2025-04-14",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "", "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 412,
            "completion_tokens": 389,
            "total_tokens": 801,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_b3f1157249",
    }
    words = [
        "the",
        "cache",
        "answers",
        "in",
        "one",
        "round",
        "trip",
        "while",
        "the",
        "upstream",
        "model",
        "takes",
        "seconds",
        "so",
        "every",
        "saved",
        "call",
        "is",
        "latency",
        "and",
        "money",
        "kept",
    ]
    filler = max(0, size - len(orjson.dumps(value)))
    text: list[str] = []
    length = 0
    while length < filler:
        word = words[len(text) % len(words)]
        text.append(word)
        length += len(word) + 1
    value["choices"][0]["message"]["content"] = " ".join(text)[:filler]
    return value
