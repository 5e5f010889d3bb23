"""The entry envelope codec."""

from __future__ import annotations

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
    with pytest.raises(TypeError, match="not JSON-serialisable"):
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
