"""One JSON-data rule for requests and values (fleetcache.core.jsondata), as properties."""

from __future__ import annotations

import datetime
import enum
import math
import uuid
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetcache.core.envelope import Envelope, decode, encode
from fleetcache.core.keys import canonical_json, request_hash


class Color(enum.Enum):
    """A str-valued Enum."""

    RED = "red"
    NULL = "null"


class Level(enum.Enum):
    """An int-valued Enum, one member beyond 64 bits."""

    LOW = 1
    HUGE = 2**70


class Weird(enum.Enum):
    """Enum members whose values are not JSON data."""

    NAN = float("nan")
    INF = float("inf")
    SET = frozenset({1})


class _Float(float):
    """A float subclass: orjson refuses it."""


class _Tag(enum.StrEnum):
    """A StrEnum: accepted as a value, refused as a dict key (not exactly a str)."""

    A = "a"


class _Pair(NamedTuple):
    """A namedtuple (a tuple subclass): orjson refuses it."""

    a: int
    b: int


NON_FINITE = (float("nan"), float("inf"), float("-inf"))

texts = st.text(max_size=12) | st.sampled_from(["null", "nullable", "x:null,", "[null]", ""])
big_ints = st.integers(min_value=2**64 - 3, max_value=2**80) | st.integers(
    min_value=-(2**80), max_value=-(2**63) + 3
)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | big_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
ish_leaves = json_leaves | st.uuids() | st.sampled_from([*Color, *Level])


def _containers(children: st.SearchStrategy[Any], *, tuples: bool) -> st.SearchStrategy[Any]:
    """Lists, dicts with str keys and (optionally) tuples of ``children``."""
    out: st.SearchStrategy[Any] = st.lists(children, max_size=4) | st.dictionaries(
        texts, children, max_size=4
    )
    if tuples:
        out = out | st.lists(children, max_size=4).map(tuple)
    return out


json_data = st.recursive(json_leaves, lambda c: _containers(c, tuples=False), max_leaves=15)
jsonish = st.recursive(ish_leaves, lambda c: _containers(c, tuples=True), max_leaves=15)

refused_leaves = st.sampled_from(
    [*NON_FINITE, Weird.NAN, Weird.INF, Weird.SET, {1, 2}, b"null", datetime.date(2024, 1, 1),
     {1: "int key"}, {None: "None key"}, {True: "bool key"}, {1.5: "float key"}, object(),
     _Float(1.5), _Pair(1, 2), {_Tag.A: "StrEnum key"}, _Tag.A, uuid.UUID(int=7)]
)
mixed = st.recursive(
    ish_leaves | refused_leaves, lambda c: _containers(c, tuples=True), max_leaves=12
)


def _insert(container: Any, bad: Any, where: int) -> Any:
    """``container`` (a list, tuple or dict) with ``bad`` added at a position chosen by where."""
    if isinstance(container, dict):
        return {**container, f"k{where}": bad}
    items = list(container)
    items.insert(where % (len(items) + 1), bad)
    return tuple(items) if isinstance(container, tuple) else items


with_non_finite: st.SearchStrategy[Any] = st.deferred(
    lambda: st.sampled_from([*NON_FINITE, Weird.NAN, Weird.INF])
    | st.builds(
        _insert, _containers(jsonish, tuples=True), with_non_finite, st.integers(0, 4)
    )
)


def _accepted(obj: Any) -> bool:
    """Whether ``obj`` is accepted as a request."""
    try:
        canonical_json(obj)
    except TypeError:
        return False
    return True


def _spec_accepts(obj: Any) -> bool:
    """The documented rule written out plainly, as a test oracle (shallow data only)."""
    if obj is None or isinstance(obj, (bool, str)):
        return True
    if isinstance(obj, enum.Enum):
        return _spec_accepts(obj.value)
    if isinstance(obj, int):
        return True
    if type(obj) is float:
        return math.isfinite(obj)
    if type(obj) is uuid.UUID:
        return True
    if isinstance(obj, dict):
        return all(type(k) is str for k in obj) and all(map(_spec_accepts, obj.values()))
    if isinstance(obj, list) or type(obj) is tuple:
        return all(map(_spec_accepts, obj))
    return False


def _rendered(obj: Any) -> Any:
    """The JSON data ``obj`` stands for: tuples as lists, UUIDs as str, Enum members as values."""
    if isinstance(obj, enum.Enum):
        return _rendered(obj.value)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _rendered(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rendered(x) for x in obj]
    return obj


def _typed(obj: Any) -> Any:
    """A tree that compares equal only when types match too (1, 1.0 and True differ)."""
    if isinstance(obj, dict):
        return ("dict", [(k, _typed(v)) for k, v in obj.items()])
    if isinstance(obj, list):
        return ("list", [_typed(x) for x in obj])
    if isinstance(obj, float):
        return ("float", repr(obj))
    return (type(obj).__name__, obj)


def _reorder(obj: Any) -> Any:
    """Rebuild dicts with their keys in reverse insertion order, at every depth."""
    if isinstance(obj, dict):
        return {k: _reorder(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [_reorder(x) for x in obj]
    if isinstance(obj, tuple):
        return tuple(_reorder(x) for x in obj)
    return obj


@given(mixed)
def test_property_acceptance_ignores_unrelated_content(x: Any) -> None:
    """(hardening item 9) Accepting X does not depend on a null or "nullable" next to it."""
    accepted = _accepted(x)
    assert accepted == _spec_accepts(x)
    assert _accepted({"a": x, "x": None}) == accepted
    assert _accepted([x, "nullable"]) == accepted
    assert _accepted({"a": x, "n": 2**70}) == accepted
    if accepted:
        body = canonical_json(x)
        assert canonical_json({"a": x, "x": None}) == b'{"a":' + body + b',"x":null}'
        assert canonical_json([x, "nullable"]) == b"[" + body + b',"nullable"]'


@given(jsonish)
def test_property_json_ish_data_is_accepted_as_request_and_value(x: Any) -> None:
    """(hardening item 9) JSON data plus UUIDs and Enum members is accepted, next to null too."""
    request_hash({"a": x, "x": None})
    encode(Envelope(1.0, 2.0, 0.0, None, [x, None]))


@given(with_non_finite)
def test_property_non_finite_anywhere_is_refused(x: Any) -> None:
    """(hardening item 8) NaN or an infinity anywhere refuses the request and the value."""
    with pytest.raises(TypeError, match="NaN or an infinity"):
        canonical_json(x)
    with pytest.raises(TypeError, match="NaN or an infinity"):
        encode(Envelope(1.0, 2.0, 0.0, None, x))


@given(jsonish)
def test_property_key_order_does_not_change_the_hash(x: Any) -> None:
    """Equal objects whose dicts list their keys in another order hash alike."""
    assert request_hash(x) == request_hash(_reorder(x))


@given(json_data)
def test_property_values_round_trip_exactly(x: Any) -> None:
    """(hardening item 8) JSON values, big integers included, decode to exactly what was stored."""
    env = decode(encode(Envelope(1.5, 2.5, 0.25, 7, x)))
    assert _typed(env.value) == _typed(x)


@given(jsonish)
def test_property_values_read_back_as_the_json_they_render_to(x: Any) -> None:
    """Tuples, UUIDs and Enum members in a value read back as the JSON they render to."""
    env = decode(encode(Envelope(1.5, 2.5, 0.25, None, x)))
    assert _typed(env.value) == _typed(_rendered(x))


@given(jsonish)
def test_property_value_and_request_rules_agree(x: Any) -> None:
    """A value is accepted exactly when the same object is accepted as a request."""
    for obj in (x, [x, None]):
        try:
            canonical_json(obj)
        except TypeError:
            with pytest.raises(TypeError):
                encode(Envelope(1.0, 2.0, 0.0, None, obj))
        else:
            encode(Envelope(1.0, 2.0, 0.0, None, obj))


@pytest.mark.parametrize("bad", list(NON_FINITE))
def test_non_finite_float_in_stdlib_path_is_refused(bad: float) -> None:
    """NaN next to an integer beyond 64 bits (the fallback path) is refused like anywhere else."""
    assert not math.isfinite(bad)
    with pytest.raises(TypeError, match="NaN or an infinity"):
        canonical_json({"n": 2**70, "f": [bad]})
    with pytest.raises(TypeError, match="NaN or an infinity"):
        encode(Envelope(1.0, 2.0, 0.0, None, {"n": 2**70, "f": (bad,)}))


class _EqSpy(dict[str, Any]):
    """A dict that counts how often it is compared for equality."""

    calls = 0

    def __eq__(self, other: object) -> bool:
        type(self).calls += 1
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        type(self).calls += 1
        return dict.__ne__(self, other)

    __hash__ = None



def _spy_on_walk(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Replace jsondata's non-finite walk by one that records its argument (finds nothing)."""
    from fleetcache.core import jsondata  # noqa: PLC0415

    walks: list[object] = []

    def walk(obj: object) -> bool:
        walks.append(obj)
        return False

    monkeypatch.setattr(jsondata, "_holds_non_finite", walk)
    return walks


def test_null_substring_in_a_string_skips_the_finite_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """(hardening item 9) A "null" inside a string ("nullable") costs no NaN check at all."""
    walks = _spy_on_walk(monkeypatch)
    monkeypatch.setattr(_EqSpy, "calls", 0)
    schema = _EqSpy({"type": "object", "nullable": True, "description": "null or not"})
    request_hash(schema)
    assert (_EqSpy.calls, walks) == (0, [])


def test_null_token_costs_one_comparison_not_a_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON null costs one C-speed comparison; the Python walk runs only when that differs."""
    walks = _spy_on_walk(monkeypatch)
    monkeypatch.setattr(_EqSpy, "calls", 0)
    request_hash(_EqSpy({"seed": None, "nullable": True}))
    assert (_EqSpy.calls, walks) == (1, [])
    request_hash({"seed": None, "pair": (1, 2)})  # a tuple reads back as a list: differs
    assert len(walks) == 1


def test_module_documents_the_rules() -> None:
    """The jsondata module docstring states the acceptance rules."""
    from fleetcache.core import jsondata  # noqa: PLC0415

    doc = jsondata.__doc__ or ""
    for word in ("NaN", "uuid.UUID", "enum.Enum", "64 bits", "str"):
        assert word in doc


def test_integer_too_long_for_repr_is_refused() -> None:
    """An integer with more digits than sys.get_int_max_str_digits() is refused with TypeError."""
    huge = 10**5000
    with pytest.raises(TypeError, match="digits"):
        canonical_json({"n": huge})
    with pytest.raises(TypeError, match=r"^value is not JSON-serialisable: .*digits"):
        encode(Envelope(1.0, 2.0, 0.0, None, [huge]))


def test_refusal_hides_orjson_internals() -> None:
    """The TypeError is raised on its own, not chained to orjson's error."""
    with pytest.raises(TypeError) as info:
        canonical_json({"a": {1, 2}})
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_too_deep_and_cyclic_objects_are_refused() -> None:
    """Objects nested 255 levels deep, or containing themselves, are refused, big ints or not."""
    for leaf in (1, 2**70):
        deep: Any = leaf
        for _ in range(255):
            deep = [deep]
        with pytest.raises(TypeError, match="nested"):
            canonical_json(deep)
        cyclic: list[Any] = [leaf]
        cyclic.append(cyclic)
        with pytest.raises(TypeError, match="nested"):
            canonical_json(cyclic)
