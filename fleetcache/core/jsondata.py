"""JSON data: the one rule for what a request or a cached value may hold, and its codec.

Requests (hashed by :mod:`fleetcache.core.keys`) and values (stored by
:mod:`fleetcache.core.envelope`) follow exactly the same rule.  Accepted:

- ``None``, ``bool``, ``str`` (subclasses too), ``int`` of any size (subclasses too; beyond
  64 bits see below), ``float`` (the type itself) when finite;
- ``dict`` (subclasses too) whose keys are all of type ``str`` exactly; ``list`` (subclasses
  too) and ``tuple`` (the type itself), both written as a JSON array;
- orjson's renderings, taken as the JSON they render to: a ``uuid.UUID`` (the type itself) is
  its lowercase hyphenated string, an ``enum.Enum`` member is its ``value``, which must
  itself be JSON data (a member whose value is NaN is refused).

Everything else raises :class:`TypeError` whose message says whether the request or the
value is not JSON data and what is wrong: NaN and infinities (anywhere, Enum values
included), non-``str`` dict keys (int, float, bool, None, UUID, Enum members, ``str``
subclasses), sets, bytes, ``float``/``tuple``/``UUID`` subclasses (namedtuples), dataclasses,
datetimes, arbitrary objects, strings holding lone surrogates, containers nested 255 levels
deep or more (or containing themselves), integers with more decimal digits than
``sys.get_int_max_str_digits()`` (4300 by default).  Acceptance and the bytes written depend
on the object alone, never on what else sits next to it.

How, cheaply: one ``orjson.dumps`` call does the work.  orjson writes NaN and infinities as
``null``, so only when the output holds a JSON ``null`` token (a regex, not a substring
test: ``"nullable"`` inside a string does not count) is the output parsed back and compared
with the object, both in C; only when they differ (NaN, or tuples, UUIDs and Enum members,
which read back as something else) does a Python walk look for non-finite floats.

Integers beyond 64 bits, which orjson refuses, are replaced by ``orjson.Fragment`` objects
holding their decimal digits and the object is encoded by orjson again: same rules, same
output as if orjson took them.  ``orjson.loads`` reads such integers back as floats, so the
encoder reports them (:attr:`Encoded.wide_ints`) and ``loads(..., wide_ints=True)`` reads
such text with the standard library, which keeps them exact.

``orjson.Fragment`` objects passed in are raw JSON that orjson inserts verbatim, unchecked
and unsorted: they are outside this contract.
"""

from __future__ import annotations

import enum
import json
import math
import re
import sys
from typing import Any, NamedTuple, NoReturn

import orjson

MAX_DEPTH = 255
"""orjson's nesting limit: containers nested this many levels deep are refused."""

_PLAIN = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_SORTED = _PLAIN | orjson.OPT_SORT_KEYS
_INT_MIN = -(2**63)  # orjson takes [-2**63, 2**64): int64 and uint64
_INT_END = 2**64
# Output is compact, so a null token sits between one of ``[ : ,`` (or the start) and one of
# ``, ] }`` (or the end).  A string such as "a:null," matches too: that only costs the slower
# check.  The literal comes first so the regex engine scans for it at C speed (as fast as
# ``b"null" in out``, so no substring test precedes it).
_NULL_TOKEN = re.compile(rb"null(?<![^\[:,]null)(?![^,\]}])")
_JSON_DATA = (
    "JSON data is dict with str keys, list, tuple, str, int, finite float, bool, None, "
    "uuid.UUID and enum.Enum members"
)


class Encoded(NamedTuple):
    """Encoder output: the JSON bytes, and whether they hold integers beyond 64 bits."""

    data: bytes
    wide_ints: bool


class _TooManyDigitsError(ValueError):
    """An integer too long for ``int.__repr__`` (``sys.get_int_max_str_digits``)."""


def dumps(obj: Any, *, sort_keys: bool, what: str) -> bytes:
    """Compact UTF-8 JSON of ``obj``, keys sorted at every depth when ``sort_keys``.

    ``what`` ("request", "value") names ``obj`` in the TypeError raised when it is not
    JSON data (see the module docstring for the rule).
    """
    return encode(obj, sort_keys=sort_keys, what=what).data


def encode(obj: Any, *, sort_keys: bool, what: str) -> Encoded:
    """Like :func:`dumps`, also saying whether the JSON holds integers beyond 64 bits."""
    option = _SORTED if sort_keys else _PLAIN
    try:
        out = orjson.dumps(obj, option=option)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise _refusal(what, obj, str(exc)) from None
        return Encoded(_encode_wide(obj, option, what), True)
    if _NULL_TOKEN.search(out) is not None and orjson.loads(out) != obj:
        _check_finite(obj, what)
    return Encoded(out, False)


def loads(raw: bytes | memoryview, *, wide_ints: bool = False) -> Any:
    """Parse JSON written by :func:`encode`; ValueError when it is not valid JSON.

    ``wide_ints`` (the flag :func:`encode` returned) reads with the standard library so that
    integers beyond 64 bits come back exact; NaN and infinities are refused there too.
    """
    if not wide_ints:
        return orjson.loads(raw)
    try:
        return json.loads(bytes(raw), parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _encode_wide(obj: Any, option: int, what: str) -> bytes:
    """Encode ``obj``, which holds integers beyond 64 bits, with orjson all the same."""
    try:
        out = orjson.dumps(_widen(obj, 0), option=option)
    except _TooManyDigitsError:
        limit = sys.get_int_max_str_digits()
        raise _refusal(what, obj, f"it holds an integer with more than {limit} digits") from None
    except orjson.JSONEncodeError as exc:
        raise _refusal(what, obj, str(exc)) from None
    if _NULL_TOKEN.search(out) is not None:
        _check_finite(obj, what)
    return out


def _widen(obj: Any, depth: int) -> Any:
    """``obj`` with each integer beyond 64 bits replaced by a Fragment of its digits.

    Containers are rebuilt only as orjson reads them (dict and list subclasses, tuples, Enum
    values; their own contents, whatever ``items`` or ``__iter__`` overrides say); anything
    orjson refuses is left in place, so orjson still refuses it.
    """
    if depth > MAX_DEPTH:  # too deep (or cyclic): orjson will refuse it as it is
        return obj
    if isinstance(obj, enum.Enum):
        return _widen(obj.value, depth)
    if isinstance(obj, int) and not isinstance(obj, bool):
        if _INT_MIN <= obj < _INT_END:
            return obj
        try:
            return orjson.Fragment(int.__repr__(obj))
        except ValueError:
            raise _TooManyDigitsError from None
    if isinstance(obj, dict):
        return {k: _widen(v, depth + 1) for k, v in dict.items(obj)}
    if isinstance(obj, list):
        return [_widen(x, depth + 1) for x in list.__iter__(obj)]
    if type(obj) is tuple:
        return [_widen(x, depth + 1) for x in obj]
    return obj


def _check_finite(obj: Any, what: str) -> None:
    """Raise TypeError when ``obj`` (already accepted by orjson) holds NaN or an infinity."""
    if _holds_non_finite(obj):
        raise _refusal(what, obj, "it holds NaN or an infinity, which JSON cannot represent")


def _holds_non_finite(obj: Any) -> bool:
    """Whether ``obj`` holds a non-finite float anywhere (dict values, items, Enum values).

    Only called on objects orjson encoded, so they are finite trees of known types.
    """
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(dict.values(item))
        elif isinstance(item, list):
            stack.extend(list.__iter__(item))
        elif isinstance(item, tuple):
            stack.extend(item)
        elif isinstance(item, enum.Enum):
            stack.append(item.value)
    return False


def _refusal(what: str, obj: Any, problem: str) -> TypeError:
    """The TypeError for ``obj``, turning orjson's message into what is wrong."""
    if problem.startswith("Type is not JSON serializable: "):
        problem = f"it holds a {problem.rpartition(': ')[2]} ({_JSON_DATA})"
    elif problem == "Dict key must be str":
        problem = f"it holds the dict key {_first_non_str_key(obj)!r}, which is not a str"
    elif problem == "Recursion limit reached":
        problem = f"it is nested {MAX_DEPTH} levels deep or more (or contains itself)"
    return TypeError(f"{what} is not JSON-serialisable: {problem}")


def _first_non_str_key(obj: Any) -> object:
    """The first dict key in ``obj`` that is not exactly a str (for error messages only)."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH or id(item) in seen:
            continue
        if isinstance(item, enum.Enum):
            stack.append((item.value, depth))
        elif isinstance(item, dict):
            seen.add(id(item))
            for key in dict.keys(item):
                if type(key) is not str:
                    return key
            stack.extend((v, depth + 1) for v in reversed(dict.values(item)))
        elif isinstance(item, (list, tuple)):
            seen.add(id(item))
            stack.extend((x, depth + 1) for x in reversed(list(item)))
    return "?"


def _refuse_constant(name: str) -> NoReturn:
    """``parse_constant`` hook: NaN and infinities are not JSON."""
    raise ValueError(f"{name} is not valid JSON")
