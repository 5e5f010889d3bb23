"""The pure parser behind purge: which keys belong to a superseded generation."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fleetcache.core.events import MAX_GENERATION
from fleetcache.core.keys import KeyLayout
from fleetcache.core.purge_keys import is_superseded, key_generation

namespaces = st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)
generations = st.integers(min_value=1, max_value=MAX_GENERATION)
digests = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


def entry_keys(namespace: str, digest: str, gen: int) -> list[str]:
    """Every per-entry key the layout makes (all EntryKeys fields), plus the lease's fence
    counter that FencedLock keeps next to the lease."""
    keys = KeyLayout(namespace).entry(digest, gen)
    names = [getattr(keys, f.name) for f in dataclasses.fields(keys)]
    return [*names, keys.lock + ":fence"]


@given(namespaces, digests, generations)
def test_every_entry_key_parses_back_to_its_generation(ns: str, digest: str, gen: int) -> None:
    """Each key of an entry, as str or bytes, gives back the generation it was built with."""
    for key in entry_keys(ns, digest, gen):
        assert key_generation(key, ns) == gen
        assert key_generation(key.encode(), ns) == gen


@given(namespaces)
def test_generation_key_and_channel_never_match(ns: str) -> None:
    """The namespace's generation key and events channel have no generation."""
    layout = KeyLayout(ns)
    for key in (layout.gen, layout.channel):
        assert key_generation(key, ns) is None
        assert not is_superseded(key, ns, MAX_GENERATION)


@given(namespaces, namespaces, digests, generations)
def test_other_namespaces_never_match(ns: str, other: str, digest: str, gen: int) -> None:
    """A key of another namespace never parses, even when one name prefixes the other."""
    assume(ns != other)
    for candidate in (other, ns + other, other + ns):
        if candidate == ns or len(candidate) > 64:
            continue
        for key in entry_keys(candidate, digest, gen):
            assert key_generation(key, ns) is None


def test_prefix_namespaces_do_not_mix() -> None:
    """'llm' and 'llm2' (or 'llm.v2', 'llm-') stay apart in both directions."""
    digest = "a" * 64
    for other in ("llm2", "llm.v2", "llm-", "llm_", "ll", "LLM"):
        assert key_generation(KeyLayout(other).value_key(digest, 5), "llm") is None
        assert key_generation(KeyLayout("llm").value_key(digest, 5), other) is None


@given(namespaces, digests, generations)
def test_malformed_keys_never_match(ns: str, digest: str, gen: int) -> None:
    """Keys that bend the layout (generation, digest, braces, suffix) have no generation."""
    base = f"fc:{ns}:"
    tag = f"{{{digest}}}"
    malformed = [
        f"{base}0{gen}:{tag}",  # leading zero
        f"{base}0:{tag}",  # generation 0
        f"{base}-{gen}:{tag}",
        f"{base}+{gen}:{tag}",
        f"{base}{MAX_GENERATION + gen}:{tag}",  # beyond 63 bits
        f"{base}{gen}.0:{tag}",
        f"{base}{gen}:{digest}",  # no hash tag
        f"{base}{gen}:{{{digest.upper()}}}" if digest != digest.upper() else f"{base}x",  # A-F
        f"{base}{gen}:{{{digest[:-1]}}}",  # 63 hex digits
        f"{base}{gen}:{{{digest}0}}",  # 65
        f"{base}{gen}:{{{digest[:-1]}g}}",
        f"{base}{gen}:{tag}x",
        f"{base}{gen}:{tag}:",
        f"{base}{gen}:{tag}::lock",
        f"{base}{gen}:{tag}:LOCK",
        f"{base}{gen}:{tag}:lock:",
        f"{base}{gen}:{tag}:lock ",
        f"{base}{gen}:{tag}\n",
        f"{base}{gen}:{tag}:lock\n",
        f"{base}{gen}",
        f"{base}{gen}:",
        f"{base}:{gen}:{tag}",
        f"{base}\u0661:{tag}",  # an Arabic-Indic digit one
        f" {base}{gen}:{tag}",
        f"FC:{ns}:{gen}:{tag}",
        f"fc:{ns}{gen}:{tag}",
        f"{ns}:{gen}:{tag}",
    ]
    for key in malformed:
        assert key_generation(key, ns) is None, key
        assert not is_superseded(key, ns, MAX_GENERATION), key


def test_non_ascii_bytes_never_match() -> None:
    """A key that is not ASCII (bytes from SCAN) has no generation and does not raise."""
    assert key_generation(b"fc:ns:5:{" + b"a" * 64 + b"}\xff", "ns") is None
    assert key_generation("fc:ns:5:{" + "a" * 64 + "}:é", "ns") is None


@given(namespaces, digests, generations, generations)
def test_superseded_means_a_lower_generation(
    ns: str, digest: str, gen: int, current: int
) -> None:
    """A key is superseded exactly when its generation is below the current one."""
    for key in entry_keys(ns, digest, gen):
        assert is_superseded(key, ns, current) is (gen < current)
    assert not is_superseded(KeyLayout(ns).value_key(digest, current), ns, current)


@pytest.mark.parametrize("namespace", ["", "a:b", "a*", "x" * 65, "é"])
def test_invalid_namespace_is_refused(namespace: str) -> None:
    """A namespace that the cache would refuse is refused here too (ValueError)."""
    with pytest.raises(ValueError, match="namespace"):
        key_generation("fc:a:1:{" + "0" * 64 + "}", namespace)
