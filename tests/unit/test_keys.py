"""Request hashing and the key layout."""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetcache.core.keys import KeyLayout, canonical_json, request_hash, validate_namespace

json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _reorder(obj: Any) -> Any:
    """Rebuild dicts with their keys in reverse insertion order, at every depth."""
    if isinstance(obj, dict):
        return {k: _reorder(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [_reorder(x) for x in obj]
    return obj


def test_key_order_does_not_change_the_hash() -> None:
    """Two dicts equal up to key order hash the same, at every depth."""
    a = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    b = {"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    assert request_hash(a) == request_hash(b)


def test_canonical_form_is_sorted_compact_utf8() -> None:
    """Canonical JSON sorts keys, drops whitespace and keeps non-ASCII as UTF-8."""
    assert canonical_json({"b": 1, "a": [1, 2], "é": "ü"}) == '{"a":[1,2],"b":1,"é":"ü"}'.encode()


def test_hash_is_sha256_of_canonical_json() -> None:
    """The hash is the SHA-256 hex digest of the canonical bytes."""
    req = {"z": [1, {"y": None}], "a": "x"}
    assert request_hash(req) == hashlib.sha256(b'{"a":"x","z":[1,{"y":null}]}').hexdigest()


def test_unicode_forms_are_distinct_requests() -> None:
    """Different unicode strings (NFC vs NFD) are different requests; no silent folding."""
    assert request_hash({"p": "\u00e9"}) != request_hash({"p": "e\u0301"})


def test_nested_values_matter() -> None:
    """A change deep inside a nested structure changes the hash."""
    a = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}
    b = {"messages": [{"role": "user", "content": [{"type": "text", "text": "b"}]}]}
    assert request_hash(a) != request_hash(b)


def test_list_order_matters() -> None:
    """Lists keep their order: reordered messages are a different request."""
    assert request_hash([1, 2]) != request_hash([2, 1])


def test_types_are_not_conflated() -> None:
    """1, 1.0, True and "1" are four different requests."""
    hashes = {request_hash(x) for x in (1, 1.0, True, "1")}
    assert len(hashes) == 4


@pytest.mark.parametrize(
    "bad",
    [{1, 2}, b"bytes", object(), {"k": float("nan")}, {"k": float("inf")}, {1: "int key"}],
)
def test_non_json_requests_raise_type_error(bad: Any) -> None:
    """Anything that is not strict JSON data is refused with TypeError."""
    with pytest.raises(TypeError):
        request_hash(bad)


@given(json_values)
def test_property_reordering_keys_keeps_the_hash(value: Any) -> None:
    """For any JSON value, reordering dict keys at every depth keeps the hash."""
    assert request_hash(value) == request_hash(_reorder(value))


@given(json_values)
def test_property_canonical_json_round_trips(value: Any) -> None:
    """Canonical JSON parses back to an equal value and is stable under re-encoding."""
    text = canonical_json(value)
    assert canonical_json(json.loads(text)) == text


@given(json_values, json_values)
def test_property_different_values_hash_differently(a: Any, b: Any) -> None:
    """Values with different canonical forms get different hashes."""
    if canonical_json(a) != canonical_json(b):
        assert request_hash(a) != request_hash(b)


def test_entry_keys_share_one_hash_tag() -> None:
    """Value, lock, error and fence keys of an entry share the {hash} tag and the generation."""
    keys = KeyLayout("llm").entry("abc", 7)
    assert keys.value == "fc:llm:7:{abc}"
    for k in (keys.lock, keys.error, keys.fence):
        assert k.startswith("fc:llm:7:{abc}:")
        assert k[k.index("{") : k.index("}") + 1] == "{abc}"


@pytest.mark.parametrize("ns", ["", "a b", "x{y}", "a:b", "é", "n" * 65, "llm\n", "\nllm"])
def test_bad_namespaces_are_refused(ns: str) -> None:
    """Namespaces that would break the key layout raise ValueError."""
    with pytest.raises(ValueError, match="namespace"):
        validate_namespace(ns)


def test_namespace_must_be_str() -> None:
    """A non-str namespace raises TypeError."""
    with pytest.raises(TypeError):
        validate_namespace(3)  # type: ignore[arg-type]


def test_integers_beyond_64_bits_are_accepted() -> None:
    """Huge integers are valid JSON and hash stably, distinct from their neighbours."""
    big = 2**70
    assert canonical_json({"n": big}) == b'{"n":1180591620717411303424}'
    assert request_hash({"n": big}) != request_hash({"n": big + 1})


def test_namespace_with_trailing_newline_is_refused() -> None:
    """(hardening item 10) "llm\\n" is refused: the namespace pattern must match the whole str."""
    with pytest.raises(ValueError, match="namespace"):
        validate_namespace("llm\n")
    assert validate_namespace("llm") == "llm"


class Mode(enum.Enum):
    """An Enum for requests."""

    FAST = "fast"
    NUM = 3
    NAN = float("nan")


UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def test_uuid_is_accepted_next_to_a_null() -> None:
    """(hardening item 9) A UUID is accepted whether or not the request also holds a None."""
    assert canonical_json({"id": UID}) == b'{"id":"12345678-1234-5678-1234-567812345678"}'
    assert canonical_json({"id": UID, "x": None}) == (
        b'{"id":"12345678-1234-5678-1234-567812345678","x":null}'
    )


def test_enum_is_accepted_next_to_a_null() -> None:
    """(hardening item 9) Enum members hash as their values, next to a None too."""
    assert canonical_json([Mode.FAST, Mode.NUM, None]) == b'["fast",3,null]'
    assert request_hash({"m": Mode.FAST, "x": None}) == request_hash({"m": "fast", "x": None})


def test_uuid_is_accepted_next_to_a_nullable_string() -> None:
    """(hardening item 9) A "nullable" in a tool schema does not make a UUID refused."""
    req = {"id": UID, "tools": [{"parameters": {"nullable": True}}]}
    assert request_hash(req) == request_hash({**req, "id": str(UID)})


def test_uuid_and_enum_are_accepted_next_to_a_big_integer() -> None:
    """(hardening item 9) The stdlib path for big ints renders UUID and Enum as orjson does."""
    assert canonical_json({"n": 2**70, "id": UID, "m": Mode.FAST, "z": [Mode.NUM]}) == (
        b'{"id":"12345678-1234-5678-1234-567812345678","m":"fast",'
        b'"n":1180591620717411303424,"z":[3]}'
    )


def test_enum_member_with_nan_value_is_refused() -> None:
    """An Enum member whose value is NaN is refused, alone or next to a big integer."""
    for req in ({"m": Mode.NAN}, {"m": Mode.NAN, "n": 2**70}):
        with pytest.raises(TypeError, match="NaN"):
            request_hash(req)


@pytest.mark.parametrize(
    "key",
    [1, 1.5, True, None, UID, Mode.FAST],
    ids=["int", "float", "bool", "none", "uuid", "enum"],
)
def test_non_str_keys_are_refused_on_the_big_int_path_too(key: Any) -> None:
    """Keys that stdlib json would turn into strings are refused next to a big integer too."""
    for req in ({key: 1}, {"n": 2**70, "d": {key: 1}}):
        with pytest.raises(TypeError, match="key"):
            request_hash(req)


def test_error_names_the_request_and_the_problem() -> None:
    """The TypeError says it is the request that is not JSON data, and what is wrong."""
    with pytest.raises(TypeError, match=r"^request is not JSON-serialisable: .*set"):
        request_hash({"a": {1, 2}})
    with pytest.raises(TypeError, match=r"^request is not JSON-serialisable: .*key 7"):
        request_hash({"a": {7: 1}})
    with pytest.raises(TypeError, match=r"^request is not JSON-serialisable: .*NaN"):
        request_hash({"a": [float("nan")]})
