"""Predicates for ``Policy(cache_if=...)``: which computed values are worth storing.

A predicate is called as ``predicate(request, value) -> bool`` once a value is computed;
``False`` means the value still goes to every caller waiting on it but is not stored::

    policy = Policy(ttl=86400, cache_if=cacheable.no_tool_calls & cacheable.max_temperature(0.0))

Combinators, in the shape of tenacity's stop/retry strategies: ``a & b`` (all), ``a | b``
(any), both left to right and short-circuiting, and ``~a`` (not).  A plain function
``(request, value) -> bool`` combines on either side of a predicate (``no_tool_calls & fn``,
``fn & no_tool_calls``); two plain functions need :func:`predicate` (also a decorator)
first.  :data:`always` and :data:`never` are the constants.  Predicates have a readable
``repr`` (``no_tool_calls & max_temperature(0.0)``), compare by identity and pickle.

Shapes.  Requests are the keyword dicts of the SDKs' ``create()`` calls, values the
response's ``.model_dump()``; anything with a ``model_dump()`` method (an SDK response, an
output item passed back in ``input``) is read through it, so openai/anthropic are never
imported.  The keys are read wherever they appear, whatever the provider.  A request or
value that is not a dict gives nothing to refuse: these predicates return ``True`` for it.

:data:`no_tool_calls` is ``False`` when the value calls a tool:

- OpenAI Chat Completions: a choice whose ``message`` has non-empty ``tool_calls`` or a
  legacy ``function_call``, or whose ``finish_reason`` is ``"tool_calls"``/``"function_call"``;
- OpenAI Responses: an ``output`` item whose ``type`` is not ``message``, ``reasoning`` or
  ``compaction``; Anthropic Messages: a ``content`` block whose ``type`` is not ``text``,
  ``thinking`` or ``redacted_thinking``, or ``stop_reason == "tool_use"``.  These allow-lists
  refuse every tool item (``function_call``, ``custom_tool_call``, every ``*_call``, MCP
  items, ``tool_use``, ``server_tool_use``, ``*_tool_result``...) and kinds added later: an
  unknown kind costs a cache miss, while a stored tool call would be replayed;

or when the request carries tool results:

- Chat Completions: a message with ``role`` ``"tool"`` or ``"function"``;
- Responses: an ``input`` item whose ``type`` ends in ``_output`` (``function_call_output``,
  every ``*_call_output``, ``tool_search_output``) or ``_call``, or starts with ``mcp_``
  (server-side calls such as ``file_search_call`` or ``mcp_call`` embed their results);
- Anthropic: a ``messages[i].content`` block of type ``tool_result`` or ``*_tool_result``.

Streamed values -- the list of a stream's chunks or events, as ``fleetcache.llm`` stores
them -- call a tool when any chunk does: a Chat Completions chunk whose ``delta`` has
``tool_calls`` (or a tool ``finish_reason``); a Responses event whose ``item`` is not a
plain kind or whose ``response`` calls a tool; an Anthropic event whose ``content_block``
is not a plain kind, whose ``message`` calls a tool or whose ``delta`` stops for
``tool_use``.  Out of scope: state kept server-side (``previous_response_id``,
``item_reference``).  :func:`max_temperature` counts a
missing or ``None`` temperature as the providers' default, 1.0.  Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = [
    "Predicate",
    "PredicateLike",
    "always",
    "max_temperature",
    "never",
    "no_tool_calls",
    "not_streaming",
    "predicate",
]

PredicateLike: TypeAlias = Callable[[Any, Any], bool]
"""What the combinators accept: a :class:`Predicate` or a plain ``(request, value) -> bool``."""

DEFAULT_TEMPERATURE = 1.0
"""The temperature OpenAI and Anthropic use when a request does not set one."""

_RESPONSES_PLAIN = frozenset({"message", "reasoning", "compaction"})
_ANTHROPIC_PLAIN = frozenset({"text", "thinking", "redacted_thinking"})
_RESPONSES_TOOL_SUFFIXES = ("_output", "_call")


class Predicate:
    """Base of every predicate: ``__call__(request, value) -> bool`` and ``& | ~``."""

    def __call__(self, request: Any, value: Any) -> bool:
        """Whether ``value``, computed for ``request``, should be stored."""
        raise NotImplementedError

    def __and__(self, other: PredicateLike) -> Predicate:
        return _Combinator(False, self, other) if callable(other) else NotImplemented

    def __rand__(self, other: PredicateLike) -> Predicate:
        return _Combinator(False, other, self) if callable(other) else NotImplemented

    def __or__(self, other: PredicateLike) -> Predicate:
        return _Combinator(True, self, other) if callable(other) else NotImplemented

    def __ror__(self, other: PredicateLike) -> Predicate:
        return _Combinator(True, other, self) if callable(other) else NotImplemented

    def __invert__(self) -> Predicate:
        return _Not(self)


class _Function(Predicate):
    """A plain function, or a constant, under a name shown by ``repr``."""

    def __init__(self, fn: Callable[[Any, Any], Any], name: str) -> None:
        self.fn = fn
        self.name = name

    def __call__(self, request: Any, value: Any) -> bool:
        return bool(self.fn(request, value))

    def __repr__(self) -> str:
        return self.name


def predicate(fn: PredicateLike) -> Predicate:
    """Wrap a plain ``(request, value) -> bool`` so it combines with ``& | ~``.

    Usable as a decorator; its ``repr`` is the function's qualified name.  A
    :class:`Predicate` is returned unchanged; anything not callable raises :class:`TypeError`.
    """
    if isinstance(fn, Predicate):
        return fn
    if not callable(fn):
        raise TypeError(f"a cache_if predicate must be callable, not {fn!r}")
    return _Function(fn, getattr(fn, "__qualname__", None) or repr(fn))


class _Combinator(Predicate):
    """``a & b & ...`` or ``a | b | ...``: left to right, short-circuiting; chains flattened."""

    def __init__(self, any_: bool, *parts: PredicateLike) -> None:
        self.any = any_
        flat: list[Predicate] = []
        for p in map(predicate, parts):
            flat.extend(p.parts if isinstance(p, _Combinator) and p.any == any_ else [p])
        self.parts: tuple[Predicate, ...] = tuple(flat)

    def __call__(self, request: Any, value: Any) -> bool:
        results = (part(request, value) for part in self.parts)
        return any(results) if self.any else all(results)

    def __repr__(self) -> str:
        return (" | " if self.any else " & ").join(
            f"({p!r})" if isinstance(p, _Combinator) else repr(p) for p in self.parts
        )


class _Not(Predicate):
    """True when its part is false."""

    def __init__(self, part: Predicate) -> None:
        self.part = part

    def __call__(self, request: Any, value: Any) -> bool:
        return not self.part(request, value)

    def __repr__(self) -> str:
        inner = repr(self.part)
        return f"~({inner})" if isinstance(self.part, _Combinator) else f"~{inner}"


def max_temperature(limit: float) -> Predicate:
    """True when the request's ``temperature`` is at most ``limit``.

    A request without ``temperature`` (or with ``None``) counts as the providers' default,
    1.0, so reasoning models, which take none, fail ``max_temperature(0.0)``.  A temperature
    that is not a number (NaN included) fails; a non-dict request passes.  ``limit`` must be
    a finite number >= 0: :class:`TypeError` or :class:`ValueError` otherwise, at once.
    """
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        raise TypeError(f"max_temperature limit must be a number, not {limit!r}")
    if not math.isfinite(limit) or limit < 0:
        raise ValueError(f"max_temperature limit must be finite and >= 0, not {limit!r}")
    return _MaxTemperature(float(limit))


class _MaxTemperature(Predicate):
    """See :func:`max_temperature` (a class rather than a closure, so that it pickles)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, request: Any, value: Any) -> bool:
        req = _as_dict(request)
        if req is None:
            return True
        t = req.get("temperature")
        t = DEFAULT_TEMPERATURE if t is None else t
        return not isinstance(t, bool) and isinstance(t, (int, float)) and t <= self.limit

    def __repr__(self) -> str:
        return f"max_temperature({self.limit!r})"


def _as_dict(obj: Any) -> dict[str, Any] | None:
    """``obj`` itself if a dict, its ``model_dump()`` if that is one, else ``None``."""
    if isinstance(obj, dict):
        return obj
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        dumped = dump()
        return dumped if isinstance(dumped, dict) else None
    return None


def _dicts(obj: Any) -> list[dict[str, Any]]:
    """The items of ``obj`` that are (or dump to) dicts; ``[]`` when it is not a list."""
    if not isinstance(obj, (list, tuple)):
        return []
    return [d for d in map(_as_dict, obj) if d is not None]


def _kind(item: dict[str, Any]) -> str | None:
    kind = item.get("type")
    return kind if isinstance(kind, str) else None


def _value_calls_tool(value: dict[str, Any]) -> bool:
    for choice in _dicts(value.get("choices")):
        message = _as_dict(choice.get("message")) or {}
        if message.get("tool_calls") or message.get("function_call"):
            return True
        if choice.get("finish_reason") in ("tool_calls", "function_call"):
            return True
    for items, plain in (("output", _RESPONSES_PLAIN), ("content", _ANTHROPIC_PLAIN)):
        kinds = (_kind(item) for item in _dicts(value.get(items)))
        if any(kind is not None and kind not in plain for kind in kinds):
            return True
    return value.get("stop_reason") == "tool_use"


def _stream_calls_tool(chunks: list[Any] | tuple[Any, ...]) -> bool:
    for chunk in _dicts(chunks):
        if _value_calls_tool(chunk):
            return True
        for choice in _dicts(chunk.get("choices")):
            delta = _as_dict(choice.get("delta")) or {}
            if delta.get("tool_calls") or delta.get("function_call"):
                return True
        for key, plain in (("item", _RESPONSES_PLAIN), ("content_block", _ANTHROPIC_PLAIN)):
            kind = _kind(_as_dict(chunk.get(key)) or {})
            if kind is not None and kind not in plain:
                return True
        for key in ("response", "message"):
            inner = _as_dict(chunk.get(key))
            if inner is not None and _value_calls_tool(inner):
                return True
        delta = _as_dict(chunk.get("delta")) or {}
        if delta.get("stop_reason") == "tool_use":
            return True
    return False


def _request_has_tool_results(request: dict[str, Any]) -> bool:
    for message in _dicts(request.get("messages")):
        if message.get("role") in ("tool", "function"):
            return True
        kinds = (_kind(block) or "" for block in _dicts(message.get("content")))
        if any(kind.endswith("tool_result") for kind in kinds):
            return True
    kinds = (_kind(item) or "" for item in _dicts(request.get("input")))
    return any(k.endswith(_RESPONSES_TOOL_SUFFIXES) or k.startswith("mcp_") for k in kinds)


def _no_tool_calls(request: Any, value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        if _stream_calls_tool(value):
            return False
    else:
        val = _as_dict(value)
        if val is not None and _value_calls_tool(val):
            return False
    req = _as_dict(request)
    return req is None or not _request_has_tool_results(req)


def _not_streaming(request: Any, value: Any) -> bool:
    req = _as_dict(request)
    return req is None or not req.get("stream")


no_tool_calls: Predicate = _Function(_no_tool_calls, "no_tool_calls")
"""False when the value calls a tool or the request carries tool results (module docstring)."""

not_streaming: Predicate = _Function(_not_streaming, "not_streaming")
"""False when the request has a truthy ``stream``; a non-dict request passes."""

def _always(request: Any, value: Any) -> bool:
    return True


def _never(request: Any, value: Any) -> bool:
    return False


always: Predicate = _Function(_always, "always")
"""Store every value (the same as no ``cache_if``)."""

never: Predicate = _Function(_never, "never")
"""Store no value: every call is computed, concurrent identical calls still share one."""
