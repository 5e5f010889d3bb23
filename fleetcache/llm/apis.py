"""The SDK endpoints ``cached()`` knows: their response types and when a response is whole.

Each :class:`Api` names the SDK's own models for the response and for stream chunks; they
are imported on first use, so ``import fleetcache.llm`` needs neither SDK.  A value is
stored as the SDK object's wire form (``to_dict(mode="json")``: the keys the server sent,
by their API names) and rebuilt with the SDK's own ``construct_type`` -- the function the
SDK itself uses to turn a server's JSON into models, without re-validating it -- so a hit
is the object a miss would have been.  A streamed call stores the list of its chunks.

``complete`` is part of every wrapper's ``cache_if``: a response that is not a finished
answer (a Responses API call still ``queued`` or ``in_progress``, a ``failed`` one, a
stream cut before its final event) is handed to its callers but never stored.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetcache.cacheable import Predicate

_RESPONSES_DONE = frozenset({"completed", "incomplete"})


def _chat_complete(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    return any(
        isinstance(choice, dict) and choice.get("finish_reason")
        for chunk in value
        if isinstance(chunk, dict)
        for choice in chunk.get("choices") or ()
    )


def _responses_complete(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("status") in _RESPONSES_DONE
    return any(
        isinstance(event, dict)
        and event.get("type") in ("response.completed", "response.incomplete")
        for event in value
    )


def _messages_complete(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    return any(isinstance(event, dict) and event.get("type") == "message_stop" for event in value)


@dataclass(frozen=True)
class Api:
    """One cached endpoint of one SDK."""

    name: str
    """``"openai.chat.completions"``: the key's ``api`` and the logs' name for it."""
    sdk: str
    """The SDK's top-level module: ``"openai"`` or ``"anthropic"``."""
    result_type: str
    """``module:Name`` of the response model (``openai.types.chat:ChatCompletion``)."""
    chunk_type: str
    """``module:Name`` of the stream chunk or event type (a model or a tagged union)."""
    is_complete: Callable[[Any], bool]
    """Whether a stored form (a dict, or a list of chunks) is a finished answer."""
    _types: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def dump(self, obj: Any) -> Any:
        """The wire form of an SDK response or chunk (JSON data)."""
        return obj.to_dict(mode="json")

    def rebuild(self, data: Any) -> Any:
        """The SDK's response model for a stored wire form."""
        return self._model(self._type("result_type"), data)

    def rebuild_chunk(self, data: Any) -> Any:
        """The SDK's chunk or event model for one stored chunk."""
        return self._model(self._type("chunk_type"), data)

    def _model(self, type_: Any, data: Any) -> Any:
        """pydantic's ``model_validate`` (compiled: ~4 µs for a chat completion, where
        ``construct_type`` walks the type hints in Python for ~80 µs), and the SDK's own
        lenient ``construct_type`` for what validation refuses (data a newer API version
        sent that the installed models do not describe) and for tagged unions of events."""
        validate = getattr(type_, "model_validate", None)
        if validate is not None:
            try:
                return validate(data)
            except ValueError:  # pydantic's ValidationError
                pass
        return self._construct(type_, data)

    def _type(self, which: str) -> Any:
        found = self._types.get(which)
        if found is None:
            module, _, name = getattr(self, which).partition(":")
            found = self._types[which] = getattr(importlib.import_module(module), name)
        return found

    def _construct(self, type_: Any, data: Any) -> Any:
        construct = self._types.get("construct")
        if construct is None:
            models = importlib.import_module(f"{self.sdk}._models")
            construct = self._types["construct"] = models.construct_type
        return construct(type_=type_, value=data)


OPENAI_CHAT = Api(
    "openai.chat.completions",
    "openai",
    "openai.types.chat:ChatCompletion",
    "openai.types.chat:ChatCompletionChunk",
    _chat_complete,
)
OPENAI_RESPONSES = Api(
    "openai.responses",
    "openai",
    "openai.types.responses:Response",
    "openai.types.responses:ResponseStreamEvent",
    _responses_complete,
)
ANTHROPIC_MESSAGES = Api(
    "anthropic.messages",
    "anthropic",
    "anthropic.types:Message",
    "anthropic.types:RawMessageStreamEvent",
    _messages_complete,
)

ROUTES: dict[str, dict[str, Any]] = {
    "openai": {
        "chat": {"completions": {"create": OPENAI_CHAT}},
        "responses": {"create": OPENAI_RESPONSES},
    },
    "anthropic": {"messages": {"create": ANTHROPIC_MESSAGES}},
}
"""Attribute paths from a client to each cached ``create``; everything else passes through."""


class Complete(Predicate):
    """``cache_if`` part: the value is a finished answer of ``api`` (see the module doc)."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def __call__(self, request: Any, value: Any) -> bool:
        return bool(self.api.is_complete(value))

    def __repr__(self) -> str:
        return f"complete({self.api.name})"
