"""The entry envelope codec."""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from typing import Any

import pytest

from fleetcache.core.envelope import MAGIC, Envelope, decode, encode
from fleetcache.errors import CodecError


def test_round_trip() -> None:
    """An envelope decodes to what was encoded, metadata included."""
    env = Envelope(1.5, 2.5, 0.25, 42, {"choices": [{"text": "héllo"}]})
    assert decode(encode(env)) == env


def test_unfenced_round_trip() -> None:
    """A None fence survives the round trip."""
    env = Envelope(1.0, 2.0, 0.0, None, [1, 2, 3])
    assert decode(encode(env)).fence is None


def test_non_json_value_raises_type_error() -> None:
    """A value that is not JSON data raises TypeError at encode time."""
    with pytest.raises(TypeError, match=r"^value is not JSON-serialisable: .*set"):
        encode(Envelope(1.0, 2.0, 0.0, None, {1, 2}))


@pytest.mark.parametrize(
    "raw",
    [b"", b"garbage", MAGIC + b"{not json", MAGIC + b"[1,2]", MAGIC + b'["a",1,1,null,1]',
     MAGIC + b'[1,1,1,"f",1]', MAGIC + b"[true,1,1,null,1]", MAGIC + b'{"a":1}',
     b"\x00\xff" * 40],
)
def test_corrupt_bytes_raise_codec_error(raw: bytes) -> None:
    """Bytes that are not a valid envelope raise CodecError, never something else."""
    with pytest.raises(CodecError):
        decode(raw)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_value_is_refused(bad: float) -> None:
    """(hardening item 8) NaN and infinities in a value are refused, not stored as null."""
    with pytest.raises(TypeError, match=r"^value is not JSON-serialisable: .*NaN or an infinity"):
        encode(Envelope(1.0, 2.0, 0.0, None, {"score": [0.5, bad]}))


@pytest.mark.parametrize("big", [2**64, 2**70, -(2**63) - 1, -(3**99)])
def test_big_integers_in_a_value_round_trip_exactly(big: int) -> None:
    """(hardening item 8) Integers beyond 64 bits are stored and read back exactly, as ints."""
    env = Envelope(1.0, 2.0, 0.0, 5, {"n": big, "m": [big, 1.5, None]})
    back = decode(encode(env))
    assert back == env
    assert type(back.value["n"]) is int


def test_64_bit_edges_stay_on_the_orjson_path() -> None:
    """The largest integers orjson handles keep the ordinary magic and read back exactly."""
    env = Envelope(1.0, 2.0, 0.0, 5, [2**64 - 1, -(2**63)])
    raw = encode(env)
    assert raw.startswith(MAGIC)
    assert decode(raw) == env


def test_stdlib_decoding_only_for_big_integer_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """(hardening item 8) Only entries holding integers beyond 64 bits are read by the stdlib."""
    wide = encode(Envelope(1.0, 2.0, 0.0, 5, {"n": 2**70}))
    plain = encode(Envelope(1.0, 2.0, 0.0, 5, {"n": 2**63}))
    assert not wide.startswith(MAGIC)
    assert plain.startswith(MAGIC)
    calls: list[object] = []
    real = json.loads

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(json, "loads", spy)
    assert decode(plain).value == {"n": 2**63}
    assert calls == []
    assert decode(wide).value == {"n": 2**70}
    assert len(calls) == 1


@dataclasses.dataclass
class _Point:
    """A dataclass, which is not JSON data."""

    x: int


@pytest.mark.parametrize(
    "bad",
    [{1, 2}, b"bytes", object(), _Point(1), datetime.datetime(2024, 1, 1),
     datetime.date(2024, 1, 1)],
    ids=["set", "bytes", "object", "dataclass", "datetime", "date"],
)
def test_non_json_values_are_refused(bad: Any) -> None:
    """(hardening item 8) Sets, bytes, objects, dataclasses and datetimes are refused in values."""
    with pytest.raises(TypeError, match=r"^value is not JSON-serialisable: "):
        encode(Envelope(1.0, 2.0, 0.0, None, {"v": [bad]}))


@pytest.mark.parametrize("key", [1, None, True, 2.5], ids=["int", "none", "bool", "float"])
def test_non_str_keys_in_a_value_are_refused(key: Any) -> None:
    """(hardening item 8) A non-str dict key in a value is refused, and the message names it."""
    for value in ({"d": {key: 1}}, {"n": 2**70, "d": {key: 1}}):
        with pytest.raises(TypeError, match=rf"^value is not JSON-serialisable: .*key {key!r}"):
            encode(Envelope(1.0, 2.0, 0.0, None, value))


def test_uuid_in_a_value_reads_back_as_its_string() -> None:
    """A UUID in a value is stored as the JSON string orjson renders it to."""
    uid = uuid.uuid4()
    assert decode(encode(Envelope(1.0, 2.0, 0.0, None, [uid, None]))).value == [str(uid), None]


@pytest.mark.parametrize(
    "body", [b"[1,2]", b"[1,1,1,null,NaN]", b"[1,1,1,null,Infinity]", b"{not json"]
)
def test_corrupt_big_integer_entries_raise_codec_error(body: bytes) -> None:
    """A stdlib-decoded entry that is corrupt (or holds NaN) raises CodecError too."""
    wide = encode(Envelope(1.0, 2.0, 0.0, 5, 2**70))
    with pytest.raises(CodecError):
        decode(wide[: len(MAGIC)] + body)
