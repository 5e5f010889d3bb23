"""The cache request of an SDK call: the canonical form of what can change the output.

Pure: no I/O, and neither SDK is imported.  :func:`build` turns the keyword arguments of a
``create()`` call into

- the **request** the cache hashes: every argument that can change the output, in a
  canonical form, plus ``"fleetcache.llm": {"api": ..., "base_url": ...}`` (two
  deployments serving the same model name never share an entry);
- the **keyword arguments passed to the SDK**: the caller's own, untouched, except that a
  one-shot iterator (``messages=(m for m in ...)``) is read once into a list and that list
  is both hashed and sent.

The canonical form (the README's "What the key holds"):

- Arguments the SDKs mark as not given (``NOT_GIVEN``, ``omit``) are dropped at every
  depth; a top-level ``None`` is dropped too (the SDKs send it as ``null``, which the APIs
  treat as "not set"), and so is ``stream=False``.  Defaults are not filled in:
  ``n=1`` and no ``n`` are different requests.
- Numbers: a float with an integral value is the integer (``temperature=0`` and ``0.0``
  agree, so do ``1`` and ``1.0``) at every depth; booleans stay booleans.
- Mappings become dicts, tuples and other iterables lists, SDK models (anything with
  ``model_dump``) their JSON dump; anything else that is not JSON data raises
  :class:`TypeError` naming the argument, before any call is made.
- :data:`IGNORED` arguments, which cannot change the output, are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

IGNORED: frozenset[str] = frozenset(
    {
        # transport only
        "timeout",
        "extra_headers",
        # who asks, for the provider's own records and abuse checks
        "user",
        "metadata",
        "safety_identifier",
        # whether the provider keeps the response, and its own prompt caching
        "store",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        # latency and price, not the answer
        "service_tier",
    }
)
"""Arguments left out of the key by default: they change how, when, for whom or at what
price a response is made, never what it says.  ``extra_query`` and ``extra_body`` stay in
(they can select a model version or a vendor's sampling option)."""

MARKER = "fleetcache.llm"
"""The request key holding the API's name and the client's base URL."""

_MAX_SAFE = 2**53
_SENTINELS = frozenset({"NotGiven", "Omit"})
_SDKS = frozenset({"openai", "anthropic"})


def build(
    api: str, base_url: str, kwargs: Mapping[str, Any], ignored: frozenset[str] = IGNORED
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(request, call_kwargs)`` for one call of ``api`` (see the module docstring)."""
    request: dict[str, Any] = {}
    call_kwargs = dict(kwargs)
    for name, given in kwargs.items():
        value = call_kwargs[name] = list(given) if isinstance(given, Iterator) else given
        if name in ignored or value is None or _not_given(value):
            continue
        if name == "stream" and value is False:
            continue
        request[name] = canonical(value, name)
    request[MARKER] = {"api": api, "base_url": base_url}
    return request, call_kwargs


def canonical(value: Any, where: str) -> Any:
    """The canonical JSON data of ``value``; TypeError naming ``where`` when it has none."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"argument {where!r} is not JSON data: {value!r}")
        return int(value) if value.is_integer() and abs(value) < _MAX_SAFE else value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"argument {where!r} has a non-string key {key!r}")
            if not _not_given(item):
                out[key] = canonical(item, f"{where}.{key}")
        return out
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return canonical(dump(mode="json", exclude_unset=True), where)
    if isinstance(value, Iterator):
        raise TypeError(
            f"argument {where!r} holds a one-shot iterator ({type(value).__name__}): "
            "pass a list, so that it can be both hashed and sent"
        )
    if isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray, memoryview)):
        return [canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"argument {where!r} is not JSON data ({type(value).__name__}): it cannot be part "
        "of a cache key"
    )


def _not_given(value: Any) -> bool:
    """True for the SDKs' "argument not given" sentinels (``NOT_GIVEN``, ``omit``)."""
    kind = type(value)
    return kind.__name__ in _SENTINELS and kind.__module__.split(".", 1)[0] in _SDKS
