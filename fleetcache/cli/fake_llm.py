"""The simulated LLM of the demo and the benchmarks: requests and fake completions.

Everything here is deterministic, so that a cached value can be checked for equality with
what the upstream would have returned.
"""

from __future__ import annotations

import hashlib
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


def fake_completion(i: int) -> dict[str, Any]:
    """The deterministic fake completion of request ``i``."""
    digest = hashlib.sha256(f"demo-{i}".encode()).hexdigest()
    text = f"Simulated answer #{i} ({digest[:12]}). " * 4
    return {
        "id": f"chatcmpl-{digest[:24]}",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 21, "completion_tokens": 48, "total_tokens": 69},
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
