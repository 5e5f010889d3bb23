"""Policy validation and defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fleetcache import Policy


def test_defaults_are_valid_and_frozen() -> None:
    """The default policy constructs and cannot be mutated."""
    p = Policy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.ttl = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "exc"),
    [
        ("ttl", 0, ValueError),
        ("ttl", -1.0, ValueError),
        ("ttl", float("inf"), ValueError),
        ("lock_ttl", "10", TypeError),
        ("wait_timeout", True, TypeError),
        ("poll_interval", 0.0, ValueError),
        ("fail_open", 1, TypeError),
        ("redis_timeout", float("nan"), ValueError),
    ],
)
def test_bad_values_raise_at_once(field: str, value: Any, exc: type[Exception]) -> None:
    """Each bad tunable raises the right error at construction."""
    with pytest.raises(exc):
        Policy(**{field: value})


def test_backoff_bounds_checked() -> None:
    """retry_backoff_max below retry_backoff is refused."""
    with pytest.raises(ValueError, match="retry_backoff_max"):
        Policy(retry_backoff=2.0, retry_backoff_max=1.0)


def test_poll_interval_defaults_to_quarter_lock_ttl_capped() -> None:
    """The fallback poll is lock_ttl/4, at most 0.5 s, unless set explicitly."""
    assert Policy(lock_ttl=1.0).effective_poll_interval == 0.25
    assert Policy(lock_ttl=10.0).effective_poll_interval == 0.5
    assert Policy(poll_interval=0.1).effective_poll_interval == 0.1
