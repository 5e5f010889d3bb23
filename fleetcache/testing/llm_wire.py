"""Wire formats of the fake LLM server (`fleetcache.testing.llm_server`): pure functions.

Each endpoint turns a raw request body into a `Reply`: a JSON body (non-stream replies and
errors) or a list of Server-Sent-Event frames (streams), exactly as the OpenAI Chat
Completions, OpenAI Responses and Anthropic Messages APIs put them on the wire, so the real
SDKs parse them into their own models.

Everything is deterministic. The answer text is `answer_text(model, prompt, system)`: a
sha256 of the canonical JSON (sorted keys, no spaces) of the model and the prompt (chat
`messages`, Responses `input`, Anthropic `messages`) plus the system prompt when there is one
apart from the prompt (Responses `instructions`, Anthropic `system`). Ids derive from the same
digest and timestamps are the fixed `CREATED`, so two identical requests get byte-identical
replies, and a streamed reply carries the same text and ids as the non-stream one.

A reply is a tool call instead of text when the request has non-empty `tools` and its
`tool_choice` is not "none" (`{"type": "none"}` for Anthropic). The tool named is the one a
`tool_choice` forces by name, else the first of `tools`; its arguments are always `{}`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CREATED",
    "ENDPOINTS",
    "FAIL_MODEL",
    "Reply",
    "answer_text",
    "build_reply",
    "split_text",
]

CREATED = 1_700_000_000  # the fixed `created` / `created_at` of every reply
FAIL_MODEL = "fail-500"  # a request for this model gets an HTTP 500 error reply
SYSTEM_FINGERPRINT = "fp_fakellm"

JSON = dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """What to send back: `body` as JSON, or the SSE `frames` of a `text/event-stream`."""

    status: int
    body: JSON | None = None
    frames: tuple[bytes, ...] | None = None


def canonical(value: Any) -> str:
    """The canonical JSON of `value`: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(model: str, prompt: Any, system: Any = None) -> str:
    payload: JSON = {"model": model, "prompt": prompt}
    if system is not None:
        payload["system"] = system
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


def answer_text(model: str, prompt: Any, system: Any = None) -> str:
    """The text the server answers for `model` and `prompt` (+ a separate `system` prompt)."""
    return f"Simulated answer {_digest(model, prompt, system)[:12]}. " * 4


def split_text(text: str, chunks: int) -> list[str]:
    """`text` cut into `chunks` non-empty pieces (fewer if it is shorter), in order."""
    k = max(1, min(chunks, len(text)))
    n = len(text)
    return [text[i * n // k : (i + 1) * n // k] for i in range(k)]


def _tokens(value: Any) -> int:
    """A deterministic stand-in for a token count: about 4 characters a token."""
    return max(1, len(canonical(value)) // 4)


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else canonical(data)
    return f"{head}data: {payload}\n\n".encode()


def _is_none_choice(choice: Any) -> bool:
    return choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none")


def _tool_name(body: JSON, forced: Any, first: Callable[[JSON], Any]) -> str | None:
    """The tool to call, or None for a text answer (no tools, or tool_choice "none")."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools or _is_none_choice(body.get("tool_choice")):
        return None
    if isinstance(forced, str) and forced:
        return forced
    name = first(tools[0]) if isinstance(tools[0], dict) else None
    return name if isinstance(name, str) and name else "tool"


# -- OpenAI Chat Completions ------------------------------------------------------------------


def _chat(body: JSON, chunks: int) -> Reply:
    model: str = body["model"]
    messages = body.get("messages")
    digest = _digest(model, messages)
    text = answer_text(model, messages)
    choice = body.get("tool_choice")
    forced = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    tool = _tool_name(body, forced, lambda t: t.get("function", {}).get("name"))
    call_id = f"call_{digest[:24]}"
    prompt_tokens = _tokens(messages)
    completion_tokens = 5 if tool else _tokens(text)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    head = {"id": f"chatcmpl-{digest[:29]}", "created": CREATED, "model": model}
    finish = "tool_calls" if tool else "stop"
    if not body.get("stream"):
        message: JSON = {"role": "assistant", "content": None if tool else text, "refusal": None}
        if tool:
            function = {"name": tool, "arguments": "{}"}
            message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
        completion = {
            **head,
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": usage,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        return Reply(200, body=completion)

    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

    def chunk(delta: JSON, finish_reason: str | None = None) -> bytes:
        data: JSON = {
            **head,
            "object": "chat.completion.chunk",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            data["usage"] = None
        return _sse(data)

    frames = [chunk({"role": "assistant", "content": None if tool else ""})]
    if tool:
        start = {"index": 0, "id": call_id, "type": "function"}
        start["function"] = {"name": tool, "arguments": ""}
        frames.append(chunk({"tool_calls": [start]}))
        frames.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    else:
        frames.extend(chunk({"content": piece}) for piece in split_text(text, chunks))
    frames.append(chunk({}, finish))
    if include_usage:
        tail = {
            **head,
            "object": "chat.completion.chunk",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [],
            "usage": usage,
        }
        frames.append(_sse(tail))
    frames.append(_sse("[DONE]"))
    return Reply(200, frames=tuple(frames))


# -- OpenAI Responses ------------------------------------------------------------------------


def _responses(body: JSON, chunks: int) -> Reply:
    model: str = body["model"]
    prompt, system = body.get("input"), body.get("instructions")
    digest = _digest(model, prompt, system)
    text = answer_text(model, prompt, system)
    choice = body.get("tool_choice")
    forced = choice.get("name") if isinstance(choice, dict) else None
    tool = _tool_name(body, forced, lambda t: t.get("name"))
    item_id = f"fc_{digest[:24]}" if tool else f"msg_{digest[:24]}"
    input_tokens = _tokens([prompt, system])
    output_tokens = 5 if tool else _tokens(text)

    def response(status: str, output: list[JSON]) -> JSON:
        done = status == "completed"
        return {
            "id": f"resp_{digest[:32]}",
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "completed_at": CREATED if done else None,
            "error": None,
            "incomplete_details": None,
            "instructions": system,
            "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {},
            "model": model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            }
            if done
            else None,
            "user": body.get("user"),
        }

    def item(done: bool) -> JSON:
        status = "completed" if done else "in_progress"
        if tool:
            return {
                "type": "function_call",
                "id": item_id,
                "call_id": f"call_{digest[:24]}",
                "name": tool,
                "arguments": "{}" if done else "",
                "status": status,
            }
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return {
            "type": "message",
            "id": item_id,
            "status": status,
            "role": "assistant",
            "content": content if done else [],
        }

    if not body.get("stream"):
        return Reply(200, body=response("completed", [item(True)]))

    events: list[JSON] = [
        {"type": "response.created", "response": response("in_progress", [])},
        {"type": "response.in_progress", "response": response("in_progress", [])},
        {"type": "response.output_item.added", "output_index": 0, "item": item(False)},
    ]
    at = {"item_id": item_id, "output_index": 0}
    if tool:
        events.append({"type": "response.function_call_arguments.delta", **at, "delta": "{}"})
        events.append(
            {"type": "response.function_call_arguments.done", **at, "name": tool, "arguments": "{}"}
        )
    else:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events.append(
            {"type": "response.content_part.added", **at, "content_index": 0, "part": part}
        )
        for piece in split_text(text, chunks):
            events.append(
                {
                    "type": "response.output_text.delta",
                    **at,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                }
            )
        events.append(
            {
                "type": "response.output_text.done",
                **at,
                "content_index": 0,
                "text": text,
                "logprobs": [],
            }
        )
        full_part = {**part, "text": text}
        events.append(
            {"type": "response.content_part.done", **at, "content_index": 0, "part": full_part}
        )
    events.append({"type": "response.output_item.done", "output_index": 0, "item": item(True)})
    events.append({"type": "response.completed", "response": response("completed", [item(True)])})
    frames = tuple(
        _sse({**event, "sequence_number": n}, event["type"]) for n, event in enumerate(events)
    )
    return Reply(200, frames=frames)


# -- Anthropic Messages ----------------------------------------------------------------------


def _messages(body: JSON, chunks: int) -> Reply:
    model: str = body["model"]
    prompt, system = body.get("messages"), body.get("system")
    digest = _digest(model, prompt, system)
    text = answer_text(model, prompt, system)
    choice = body.get("tool_choice")
    forced = choice.get("name") if isinstance(choice, dict) else None
    tool = _tool_name(body, forced, lambda t: t.get("name"))
    input_tokens = _tokens([prompt, system])
    output_tokens = 5 if tool else _tokens(text)
    stop_reason = "tool_use" if tool else "end_turn"
    tool_block: JSON = {"type": "tool_use", "id": f"toolu_{digest[:24]}", "name": tool, "input": {}}
    text_block: JSON = {"type": "text", "text": text}

    def message(content: list[JSON], done: bool) -> JSON:
        return {
            "id": f"msg_{digest[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason if done else None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens if done else 1},
        }

    if not body.get("stream"):
        return Reply(200, body=message([tool_block if tool else text_block], True))

    events: list[JSON] = [{"type": "message_start", "message": message([], False)}]
    if tool:
        events.append({"type": "content_block_start", "index": 0, "content_block": tool_block})
        delta = {"type": "input_json_delta", "partial_json": "{}"}
        events.append({"type": "content_block_delta", "index": 0, "delta": delta})
    else:
        start = {"type": "text", "text": ""}
        events.append({"type": "content_block_start", "index": 0, "content_block": start})
        for piece in split_text(text, chunks):
            delta = {"type": "text_delta", "text": piece}
            events.append({"type": "content_block_delta", "index": 0, "delta": delta})
    events.append({"type": "content_block_stop", "index": 0})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )
    events.append({"type": "message_stop"})
    return Reply(200, frames=tuple(_sse(event, event["type"]) for event in events))


# -- Dispatch and errors ---------------------------------------------------------------------


ENDPOINTS: dict[str, Callable[[JSON, int], Reply]] = {
    "/v1/chat/completions": _chat,
    "/v1/responses": _responses,
    "/v1/messages": _messages,
}

_ANTHROPIC_PATHS = frozenset({"/v1/messages"})


def error_reply(path: str, status: int, message: str) -> Reply:
    """An error in the style of the API behind `path` (Anthropic or OpenAI)."""
    if path in _ANTHROPIC_PATHS:
        kind = "invalid_request_error" if status < 500 else "api_error"
        return Reply(status, body={"type": "error", "error": {"type": kind, "message": message}})
    kind = "invalid_request_error" if status < 500 else "server_error"
    error = {"message": message, "type": kind, "param": None, "code": None}
    return Reply(status, body={"error": error})


def build_reply(path: str, raw: bytes, chunks: int = 8) -> Reply:
    """The reply of the generation endpoint `path` (a key of `ENDPOINTS`) to body `raw`.

    400 when `raw` is not a JSON object with a string `model`; 500 when the model is
    `FAIL_MODEL`; otherwise the endpoint's answer, streamed in `chunks` text pieces when
    the request asks for `stream`.
    """
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return error_reply(path, 400, "The request body is not valid JSON.")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return error_reply(path, 400, "The request body must be a JSON object with a 'model'.")
    if body["model"] == FAIL_MODEL:
        return error_reply(path, 500, f"Simulated upstream failure (model {FAIL_MODEL!r}).")
    return ENDPOINTS[path](body, chunks)
